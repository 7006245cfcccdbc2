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


# a field that moved: old dotted key -> new dotted key (filled by the module of the schema that moved it);
# a config or an override naming the old key fails at start-up with one line naming the new one
RENAMED_FIELDS: dict[str, str] = {}


def renamed_field_error(key: str) -> ConfigError | None:
    """The error for dotted ``key`` (an override's key, ``+``/``~`` prefixes allowed) when it names a
    renamed field or a key below one, else None."""
    key = key.lstrip("+~")
    for old, new in RENAMED_FIELDS.items():
        if key == old or key.startswith(old + "."):
            return ConfigError(f"config field `{old}` was renamed: use `{new}{key[len(old) :]}`")
    return None


def check_renamed_overrides(overrides: list[str] | tuple[str, ...]) -> None:
    """Raise :func:`renamed_field_error`'s error for the first ``KEY=VALUE`` override naming a renamed field."""
    for text in overrides:
        key = text.split("=", 1)[0] if "=" in text else text
        if (err := renamed_field_error(key)) is not None:
            raise err


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
        raise ConfigError(
            f"config field `{prefix.rstrip('.') or cls.__name__}` must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        if (renamed := renamed_field_error(f"{prefix}{key}")) is not None:
            raise renamed
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(f'`{prefix}{k}`' for k in unknown)}; expected {sorted(fields)}"
        )
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
    if (
        base is bool
        and not isinstance(value, bool)
        or base is int
        and (isinstance(value, bool) or not isinstance(value, int))
    ):
        raise ConfigError(f"config field `{name}` must be {base.__name__}, got {value!r}")
    if not isinstance(value, base):
        raise ConfigError(
            f"config field `{name}` must be {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}"
        )
    if base is float and not math.isfinite(value):
        raise ConfigError(f"config field `{name}` must be finite")
    return value


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # the one config tree (Hydra groups)


def compose_config(
    config_name: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    config_dir: str | Path = CONFIG_DIR,
    return_hydra_config: bool = False,
):
    """Hydra's compose API over ``config_dir`` (default: the repository's ``configs/``): the one way a
    config is loaded outside a ``@hydra.main`` application.

    It works whether or not Hydra's global state is already set, by a running ``pam train`` whose
    final evaluation composes a benchmark config, say: that state is set aside for the compose and
    put back afterwards. (``import sam2`` also sets it; ``pam.modeling.sam2_build.import_sam2`` is
    the one place that imports sam2 and clears it again.) Bad overrides raise :class:`ConfigError`.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err)) from None
    finally:  # the context above swaps the GlobalHydra singleton itself: look it up again
        GlobalHydra.instance().clear()
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def _one_line(err: BaseException) -> str:
    """Hydra's message on one line, without OmegaConf's ``full_key``/``object_type`` trailer; an
    override of a key the tree lacks reads as an unknown field."""
    text = str(err)
    if text.startswith("Could not override '") and "not in struct" in f"{text} {err.__cause__}":
        key = text.split("'")[1]
        if (renamed := renamed_field_error(key)) is not None:
            return str(renamed)
        return f"unknown config field `{key}` (a typo? add a new key with +{key}=...)"
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.strip().startswith(("full_key:", "object_type="))
    ]
    return " ".join(lines) or type(err).__name__


def load_group_yaml(path: str | Path, *, schema: dict) -> dict:
    """A Hydra group file (``configs/<group>/<name>.yaml``, or any ``<group>/<name>.yaml``) composed by
    Hydra, as one plain dict.

    The group is the file's folder name. Its ``defaults`` list resolves as Hydra resolves it:
    ``schema`` is the group's registered schema (``schema`` is registered for a group that has none
    yet), other names are sibling files. Values the registered schema leaves mandatory (``???``) and
    the file does not set come from ``schema``.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    group = path.parent.name
    store = ConfigStore.instance()
    if "schema.yaml" not in store.repo.get(group, {}):
        store.store(group=group, name="schema", node=copy.deepcopy(schema))
    cfg = compose_config(overrides=[f"+{group}={path.stem}"], config_dir=path.parent.parent)
    # OmegaConf's merge keeps a value that the later config leaves mandatory (???)
    merged = OmegaConf.merge(OmegaConf.create(copy.deepcopy(schema)), cfg[group])
    return OmegaConf.to_container(merged, resolve=True)


def merge_dicts(base: dict, update: dict) -> dict:
    """``update`` over ``base``: mappings merge key by key, other values replace (copies)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
