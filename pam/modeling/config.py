"""Typed model configuration, saved as ``pam_config.json`` beside every checkpoint.

Defaults are the paper's values (PAM-1.5B with SAM 2.1 Hiera-L). ``from_dict`` rejects unknown
fields and wrong types with the field's dotted name, so a typo in a YAML file fails at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.config import ConfigError, build_config, check
from ..utils.layout import TokenLayout, select_frames

_check = check
_build = build_config
__all__ = [
    "ConfigError",
    "LLMConfig",
    "PAMConfig",
    "PerceiverConfig",
    "ProcessingConfig",
    "SAM2Config",
    "select_frames",
]

SAM2_VARIANTS = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")
MASK_SELECTIONS = ("single", "stability")
TRACKING_PRESETS = ("upstream", "stock")
RESIZE_MODES = ("pil_bicubic", "sam2")


@dataclass
class SAM2Config:
    variant: str = "sam2.1_hiera_l"  # one of sam2's own configs/sam2.1/*.yaml
    image_size: int = 1024  # input side; SAM 2.1 checkpoints are trained at 1024
    checkpoint: str | None = None  # official SAM 2.1 .pt ({"model": state_dict}); None = random init
    # mask returned to the user: "single" = output 0 (upstream), "stability" = SAM 2's fallback rule
    mask_selection: str = "single"
    tracking: str = "upstream"  # released PAM's SAM 2 settings, or "stock": sam2's defaults; see docs/parity.md

    def validate(self) -> None:
        _check(self.variant in SAM2_VARIANTS, "sam2.variant", f"must be one of {SAM2_VARIANTS}, got {self.variant!r}")
        _check(
            self.image_size % 64 == 0 and self.image_size >= 128,
            "sam2.image_size",
            "must be a multiple of 64 and >= 128",
        )
        _check(self.mask_selection in MASK_SELECTIONS, "sam2.mask_selection", f"must be one of {MASK_SELECTIONS}")
        _check(self.tracking in TRACKING_PRESETS, "sam2.tracking", f"must be one of {TRACKING_PRESETS}")

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
    # SAM 2 mask tokens fed as queries: the first N of [stability-chosen, single-mask] (2 upstream; set on
    # FrozenSAM2 by pam.api.build_pam)
    num_mask_tokens: int = 2
    image_shuffle: int = 2  # pixel-shuffle factor of a still image / first frame
    frame_shuffle: int = 4  # pixel-shuffle factor of later frames (then Linear to image width)
    use_image_tokens: bool = True  # ablation: False drops the image tokens from the LLM input

    def validate(self) -> None:
        _check(self.embed_dim == 256, "perceiver.embed_dim", "must equal SAM 2's transformer width, 256")
        _check(self.depth >= 1, "perceiver.depth", "must be >= 1")
        _check(self.embed_dim % self.num_heads == 0, "perceiver.num_heads", "must divide embed_dim")
        _check(self.num_semantic_tokens >= 0, "perceiver.num_semantic_tokens", "must be >= 0")
        _check(self.num_mask_tokens in (1, 2), "perceiver.num_mask_tokens", "must be 1 or 2")
        _check(
            self.image_shuffle >= 1 and self.frame_shuffle >= self.image_shuffle,
            "perceiver.frame_shuffle",
            "must be >= image_shuffle >= 1",
        )
        _check(
            self.num_semantic_tokens > 0 or self.use_image_tokens,
            "perceiver.use_image_tokens",
            "cannot be False with no semantic tokens",
        )

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
        _check(
            (self.name_or_path is None) != (self.config is None),
            "llm",
            "set exactly one of llm.name_or_path and llm.config",
        )
        if self.config is not None:
            _check("model_type" in self.config, "llm.config.model_type", "is required")
        _check(self.dtype in ("float32", "bfloat16", "float16"), "llm.dtype", "must be float32, bfloat16 or float16")


@dataclass
class ProcessingConfig:
    resize: str = "pil_bicubic"  # upstream's PIL loader, or "sam2": sam2's SAM2Transforms; see docs/parity.md

    def validate(self) -> None:
        _check(self.resize in RESIZE_MODES, "processing.resize", f"must be one of {RESIZE_MODES}")


@dataclass
class PAMConfig:
    sam2: SAM2Config = field(default_factory=SAM2Config)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    llm: LLMConfig = field(default_factory=lambda: LLMConfig(name_or_path="Qwen/Qwen2.5-1.5B-Instruct"))
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    video_num_frames: int = 16  # frames given to the LLM: frame 0 + evenly spaced later frames
    image_token: str = "<image>"  # placeholder in the prompt, expanded to the visual tokens
    max_length: int = 12288  # longest LLM sequence; longer samples are truncated by the collator
    compile: bool = (
        False  # torch.compile SAM 2's image encoder, the perceiver and projectors (for GPUs; see docs/performance.md)
    )

    def validate(self) -> PAMConfig:
        self.sam2.validate()
        self.perceiver.validate()
        self.llm.validate()
        self.processing.validate()
        _check(self.video_num_frames >= 1, "video_num_frames", "must be >= 1")
        e = self.sam2.embedding_size
        for name in ("image_shuffle", "frame_shuffle"):
            f = getattr(self.perceiver, name)
            _check(e % f == 0, f"perceiver.{name}", f"must divide SAM 2's embedding side {e}")
        return self

    # ----- token layout -------------------------------------------------------------------
    def token_layout(self) -> TokenLayout:
        p = self.perceiver
        side = self.sam2.embedding_size
        return TokenLayout(
            first_frame_image_tokens=(side // p.image_shuffle) ** 2 if p.use_image_tokens else 0,
            later_frame_image_tokens=(side // p.frame_shuffle) ** 2 if p.use_image_tokens else 0,
            semantic_tokens=p.num_semantic_tokens,
            video_num_frames=self.video_num_frames,
        )

    def image_region_tokens(self) -> int:
        """[image tokens, image_newline, semantic tokens, semT_newline]: 1042 for the paper config."""
        return self.token_layout().image_region_tokens()

    def video_region_tokens(self, num_frames: int) -> int:
        """Each frame adds [image tokens, image_newline, semantic tokens, semT_newline, frame_newline]."""
        return self.token_layout().video_region_tokens(num_frames)

    def num_visual_tokens(self, num_frames: int | None) -> int:
        """Visual tokens for one region: an image when ``num_frames`` is None, else a video."""
        return self.token_layout().num_visual_tokens(num_frames)

    # ----- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PAMConfig:
        return _build(cls, data, "").validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> PAMConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
