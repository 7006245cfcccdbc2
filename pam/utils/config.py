"""Typed dataclass configs built from plain mappings: unknown fields and wrong types raise
``ConfigError`` naming the dotted field. One mechanism for model, trainer, stage and data configs."""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the field."""


def check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config field `{name}` {message}")


def build_config(cls, data: Any, prefix: str = ""):
    """An instance of dataclass ``cls`` from a mapping; nested dataclass fields are built recursively.

    A nested mapping starts from the field's own default when it has one (a benchmark's generation
    defaults, say), so a YAML file or an override only names what differs. ``None`` builds the
    defaults; an instance of ``cls`` passes through.
    """
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config field `{prefix.rstrip('.') or cls.__name__}` must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(f'`{prefix}{k}`' for k in unknown)}; expected {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        hint, optional = _unwrap_optional(hints[key])
        if value is None and optional:
            kwargs[key] = None
        elif dataclasses.is_dataclass(hint):
            default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else None
            if isinstance(value, dict) and dataclasses.is_dataclass(default):
                value = merge_dicts(dataclasses.asdict(default), value)
            kwargs[key] = build_config(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return inner[0], type(None) in args
    return hint, False


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = origin or hint
    if base is Any:
        return value
    if base is tuple and isinstance(value, list):  # YAML has lists only
        value = tuple(value)
    if base is bool and not isinstance(value, bool) or base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config field `{name}` must be {base.__name__}, got {value!r}")
    if not isinstance(value, base):
        raise ConfigError(f"config field `{name}` must be {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}")
    if base is float and not math.isfinite(value):
        raise ConfigError(f"config field `{name}` must be finite")
    return value



def load_group_yaml(path: str | Path, *, schema: dict) -> dict:
    """A Hydra group file (``configs/<group>/<name>.yaml``) as one plain dict, without Hydra.

    The file's ``defaults`` list is applied in order: ``schema`` is the typed schema's defaults
    (``schema``), ``_self_`` the file's own keys, any other name a sibling file of the same group
    (itself resolved the same way). Mappings merge key by key; other values replace.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    defaults = data.pop("defaults", ["_self_"])
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    out: dict = {}
    for entry in defaults:
        if entry == "_self_":
            part = data
        elif entry == "schema":
            part = copy.deepcopy(schema)
        elif isinstance(entry, str):
            part = load_group_yaml(path.with_name(f"{entry}.yaml"), schema=schema)
        else:
            raise ConfigError(f"{path}: unsupported defaults entry {entry!r}; use group-local names, `schema` or `_self_`")
        out = merge_dicts(out, part)
    return out


def merge_dicts(base: dict, update: dict) -> dict:
    """``update`` over ``base``: mappings merge key by key, other values replace (copies)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
