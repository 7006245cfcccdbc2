"""Typed model configuration, saved as ``pam_config.json`` beside every checkpoint.

Defaults are the paper's values (PAM-1.5B with SAM 2.1 Hiera-L). ``from_dict`` rejects unknown
fields and wrong types with the field's dotted name, so a typo in a YAML file fails at start-up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SAM2_VARIANTS = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")
MASK_SELECTIONS = ("single", "stability")


@dataclass
class SAM2Config:
    variant: str = "sam2.1_hiera_l"  # one of sam2's own configs/sam2.1/*.yaml
    image_size: int = 1024  # input side; SAM 2.1 checkpoints are trained at 1024
    checkpoint: str | None = None  # official SAM 2.1 .pt ({"model": state_dict}); None = random init
    mask_selection: str = "single"  # mask returned to the user: "single" = output 0 (upstream), "stability" = SAM 2's fallback rule

    def validate(self) -> None:
        _check(self.variant in SAM2_VARIANTS, "sam2.variant", f"must be one of {SAM2_VARIANTS}, got {self.variant!r}")
        _check(self.image_size % 64 == 0 and self.image_size >= 128, "sam2.image_size", "must be a multiple of 64 and >= 128")
        _check(self.mask_selection in MASK_SELECTIONS, "sam2.mask_selection", f"must be one of {MASK_SELECTIONS}")

    @property
    def embedding_size(self) -> int:
        """Side of SAM 2's image embedding (stride 16): 64 at 1024."""
        return self.image_size // 16


@dataclass
class PerceiverConfig:
    embed_dim: int = 256  # SAM 2's transformer width; fixed by SAM 2
    depth: int = 2  # number of two-way attention blocks
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2  # cross-attention internal width = embed_dim / rate
    num_semantic_tokens: int = 16  # learned queries; 0 disables the semantic tokens
    num_mask_tokens: int = 2  # SAM 2 mask tokens fed as queries: [stability-chosen, single-mask]
    image_shuffle: int = 2  # pixel-shuffle factor of a still image / first frame
    frame_shuffle: int = 4  # pixel-shuffle factor of later frames (then Linear to image width)
    use_image_tokens: bool = True  # ablation: False drops the image tokens from the LLM input

    def validate(self) -> None:
        _check(self.embed_dim == 256, "perceiver.embed_dim", "must equal SAM 2's transformer width, 256")
        _check(self.depth >= 1, "perceiver.depth", "must be >= 1")
        _check(self.embed_dim % self.num_heads == 0, "perceiver.num_heads", "must divide embed_dim")
        _check(self.num_semantic_tokens >= 0, "perceiver.num_semantic_tokens", "must be >= 0")
        _check(self.num_mask_tokens in (1, 2), "perceiver.num_mask_tokens", "must be 1 or 2")
        _check(self.image_shuffle >= 1 and self.frame_shuffle >= self.image_shuffle, "perceiver.frame_shuffle", "must be >= image_shuffle >= 1")
        _check(self.num_semantic_tokens > 0 or self.use_image_tokens, "perceiver.use_image_tokens", "cannot be False with no semantic tokens")

    @property
    def image_token_dim(self) -> int:
        return self.embed_dim * self.image_shuffle**2


@dataclass
class LLMConfig:
    name_or_path: str | None = None  # Hugging Face folder (Qwen2 / Qwen2.5 / Qwen3 causal LM)
    config: dict | None = None  # or: build from this config dict (needs "model_type"); used by the debug model
    tokenizer: str | None = None  # tokenizer folder; None = name_or_path, or the built-in debug tokenizer with `config`
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    gradient_checkpointing: bool = False

    def validate(self) -> None:
        _check((self.name_or_path is None) != (self.config is None), "llm", "set exactly one of llm.name_or_path and llm.config")
        if self.config is not None:
            _check("model_type" in self.config, "llm.config.model_type", "is required")
        _check(self.dtype in ("float32", "bfloat16", "float16"), "llm.dtype", "must be float32, bfloat16 or float16")


@dataclass
class PAMConfig:
    sam2: SAM2Config = field(default_factory=SAM2Config)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    llm: LLMConfig = field(default_factory=lambda: LLMConfig(name_or_path="Qwen/Qwen2.5-1.5B-Instruct"))
    video_num_frames: int = 16  # frames given to the LLM: frame 0 + evenly spaced later frames
    image_token: str = "<image>"  # placeholder in the prompt, expanded to the visual tokens
    max_length: int = 12288  # longest LLM sequence; longer samples are truncated by the collator

    def validate(self) -> "PAMConfig":
        self.sam2.validate()
        self.perceiver.validate()
        self.llm.validate()
        _check(self.video_num_frames >= 1, "video_num_frames", "must be >= 1")
        e = self.sam2.embedding_size
        for name in ("image_shuffle", "frame_shuffle"):
            f = getattr(self.perceiver, name)
            _check(e % f == 0, f"perceiver.{name}", f"must divide SAM 2's embedding side {e}")
        return self

    # ----- token layout -------------------------------------------------------------------
    def frame_image_tokens(self, first: bool) -> int:
        if not self.perceiver.use_image_tokens:
            return 0
        f = self.perceiver.image_shuffle if first else self.perceiver.frame_shuffle
        return (self.sam2.embedding_size // f) ** 2

    def image_region_tokens(self) -> int:
        """[image tokens, image_newline, semantic tokens, semT_newline]: 1042 for the paper config."""
        return self.frame_image_tokens(True) + 1 + self.perceiver.num_semantic_tokens + 1

    def video_region_tokens(self, num_frames: int) -> int:
        """Each frame adds [image tokens, image_newline, semantic tokens, semT_newline, frame_newline]."""
        if num_frames < 1:
            raise ValueError("a video needs at least one frame")
        n = min(num_frames, self.video_num_frames)
        s = self.perceiver.num_semantic_tokens
        return sum(self.frame_image_tokens(i == 0) + 1 + s + 1 + 1 for i in range(n))

    def num_visual_tokens(self, num_frames: int | None) -> int:
        """Visual tokens for one region: an image when ``num_frames`` is None, else a video."""
        return self.image_region_tokens() if num_frames is None else self.video_region_tokens(num_frames)

    # ----- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PAMConfig":
        return _build(cls, data, "").validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "PAMConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e


def select_frames(num_frames: int, num_selected: int) -> list[int]:
    """Frame 0 plus ``num_selected - 1`` frames spread evenly over the rest (all frames if fewer)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if num_frames <= num_selected:
        return list(range(num_frames))
    if num_selected == 1:
        return [0]
    # as upstream: np.linspace(1, T - 1, n - 1) truncated to int
    return [0] + np.linspace(1, num_frames - 1, num_selected - 1).astype(int).tolist()


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the field."""


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config field `{name}` {message}")


def _build(cls, data: Any, prefix: str):
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
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
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
    if base is bool and not isinstance(value, bool) or base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config field `{name}` must be {base.__name__}, got {value!r}")
    if not isinstance(value, base):
        raise ConfigError(f"config field `{name}` must be {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}")
    if base is float and not math.isfinite(value):
        raise ConfigError(f"config field `{name}` must be finite")
    return value
