"""Typed dataclass configs built from plain mappings: unknown fields and wrong types raise
``ConfigError`` naming the dotted field. One mechanism for model, trainer, stage and data configs."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the field."""


def check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config field `{name}` {message}")


def build_config(cls, data: Any, prefix: str = ""):
    """An instance of dataclass ``cls`` from a mapping; nested dataclass fields are built recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"config field `{prefix or cls.__name__}` must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(f'`{prefix}{k}`' for k in unknown)}; expected {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_config(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**kwargs)


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

