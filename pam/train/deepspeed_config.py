"""Fill the "auto" values of a DeepSpeed JSON config from the trainer's settings, and check it.

The configs in ``configs/deepspeed/`` leave to the trainer the keys in ``TRAINER_FILLED_KEYS``
(batch sizes, gradient accumulation, clipping and precision) as ``"auto"``. ``resolve_deepspeed_config``
replaces each with the trainer's value before ``deepspeed.initialize``. A key given a concrete value
must agree with the trainer, ``train_batch_size`` must equal micro batch x accumulation x world size,
and no ``"auto"`` may be left anywhere else: each of these raises an error naming the key.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

AUTO = "auto"
# Dotted keys the trainer fills; any other "auto" is an error.
TRAINER_FILLED_KEYS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
    "bf16.enabled",
    "fp16.enabled",
)


def _load(path_or_dict: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(path_or_dict, dict):
        return copy.deepcopy(path_or_dict), "deepspeed config"
    path = Path(path_or_dict)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no such DeepSpeed config") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno} ({err.msg})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a DeepSpeed config must be a JSON object")
    return config, str(path)


def _autos(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _autos(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in _autos(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == AUTO else []


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return False


def resolve_deepspeed_config(
    path_or_dict: str | Path | dict[str, Any],
    *,
    micro_batch: int,
    grad_accum: int,
    world_size: int,
    grad_clip: float,
    bf16: bool,
    fp16: bool,
) -> dict[str, Any]:
    """The config with every trainer-filled key set; the input is not modified.

    ``grad_clip`` is DeepSpeed's ``gradient_clipping`` (0 turns clipping off); DeepSpeed clips, so
    the trainer must not clip again. A key or precision section missing from the file is added.
    """
    config, source = _load(path_or_dict)
    for name, value in (("micro_batch", micro_batch), ("grad_accum", grad_accum), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {name} must be a positive integer, got {value!r}")
    if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip >= 0:
        raise ValueError(f"{source}: grad_clip must be a number >= 0, got {grad_clip!r}")
    if bf16 and fp16:
        raise ValueError(f"{source}: bf16 and fp16 cannot both be enabled")

    wanted: dict[str, Any] = {
        "train_batch_size": micro_batch * grad_accum * world_size,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": float(grad_clip),
        "bf16.enabled": bool(bf16),
        "fp16.enabled": bool(fp16),
    }
    for dotted, value in wanted.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{source}: {part!r} must be an object, got {child!r}")
            node = child
        current = node.get(leaf, AUTO)
        if current == AUTO:
            node[leaf] = value
        elif not _same(current, value):
            if dotted == "train_batch_size":
                raise ValueError(
                    f"{source}: train_batch_size is {current!r} but micro_batch x grad_accum x "
                    f"world_size = {micro_batch} x {grad_accum} x {world_size} = {value}"
                )
            raise ValueError(f"{source}: {dotted} is {current!r} but the trainer uses {value!r}")

    leftover = _autos(config)
    if leftover:
        raise ValueError(
            f"{source}: {', '.join(leftover)} still 'auto'; the trainer fills only "
            f"{', '.join(TRAINER_FILLED_KEYS)}; give the others concrete values"
        )
    return config
