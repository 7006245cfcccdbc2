"""Adapter for the released PAM weights (Hugging Face folders Perceive-Anything/PAM-1.5B, PAM-3B).

Those folders store one LLaVA-style state dict (``model.vision_resampler.*``,
``model.mm_projector_img.*``, ``model.layers.*``, ``lm_head.*``, ...) in safetensors shards, with
a ``config.json`` of model type ``llava_qwen``. The key map below is data: each rule is a regular
expression over the released name and its replacement in PAM's names. A key that no rule maps is
an error naming it, and so is a PAM parameter that nothing fills.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch

from ..modeling.config import LLMConfig, PAMConfig
from ..modeling.pam import PAM
from .io import load_tensors
from .strict import CheckpointMismatchError, check_state_dict, load_state_dict_strict

# (released-name pattern, PAM name). "sam2:" targets the SAM 2 model's own state dict.
RELEASED_KEY_MAP: list[tuple[str, str]] = [
    (r"^model\.vision_resampler\.sem_tokens\.weight$", r"perceiver.semantic_tokens.weight"),
    (r"^model\.vision_resampler\.proj\.(weight|bias)$", r"perceiver.frame_proj.\1"),
    (r"^model\.vision_resampler\.(layers\..+)$", r"perceiver.\1"),
    (r"^model\.vision_resampler\.(final_attn_token_to_image\..+)$", r"perceiver.\1"),
    (r"^model\.vision_resampler\.(norm_final_attn\..+)$", r"perceiver.\1"),
    (
        r"^model\.vision_resampler\.pe_layer\.positional_encoding_gaussian_matrix$",
        r"perceiver.pe_layer.positional_encoding_gaussian_matrix",
    ),
    (r"^model\.mm_projector_img\.([02]\.(?:weight|bias))$", r"image_projector.\1"),
    (r"^model\.mm_projector_semT\.([02]\.(?:weight|bias))$", r"semantic_projector.\1"),
    (r"^model\.(image_newline|semT_newline|frame_newline)$", r"\1"),
    (r"^model\.vision_tower\.sam2_model_predictor\.(.+)$", r"sam2:\1"),
    (r"^model\.(embed_tokens\..+|layers\..+|norm\..+)$", r"llm.model.\1"),
    (r"^lm_head\.weight$", r"llm.lm_head.weight"),
]
# Released keys that carry no weights PAM uses; each is named here on purpose.
IGNORED_RELEASED_KEYS: list[str] = [
    r"^model\.rotary_emb\.inv_freq$",  # a recomputed buffer in older transformers
    r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",
]
# Released config.json fields that belong to the LLaVA wrapper, not to the Qwen2 config.
_WRAPPER_CONFIG_PREFIXES = (
    "mm_",
    "vision_",
    "tokenizer_",
    "tune_",
    "image_",
    "use_mm",
    "freeze_",
    "unfreeze_",
    "pos_skipping",
    "add_faster_video",
    "faster_token_stride",
    "delay_load",
)


def map_released_key(key: str) -> str | None:
    """PAM name for a released key, ``""`` for a known-ignorable key, None if unmapped."""
    for pattern in IGNORED_RELEASED_KEYS:
        if re.match(pattern, key):
            return ""
    for pattern, target in RELEASED_KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    return None


def convert_released_state_dict(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a released state dict into (PAM state dict, SAM 2 state dict)."""
    pam, sam2, unmapped = {}, {}, []
    for key, value in state.items():
        target = map_released_key(key)
        if target is None:
            unmapped.append(key)
        elif target.startswith("sam2:"):
            sam2[target[len("sam2:") :]] = value
        elif target:
            pam[target] = value
    if unmapped:
        raise CheckpointMismatchError(
            f"released checkpoint has keys no rule maps ({len(unmapped)}): {', '.join(sorted(unmapped)[:20])}"
        )
    return pam, sam2


def load_released_state_dict(model: PAM, state: dict[str, torch.Tensor], *, source: str = "released weights") -> None:
    """Load a released state dict into ``model`` strictly.

    The LLM's ``lm_head.weight`` may be absent when the LLM ties it to the input embeddings. If
    the released dict has no SAM 2 weights, SAM 2 must already be loaded (``sam2.checkpoint``).
    """
    pam_state, sam2_state = convert_released_state_dict(state)
    expected = model.state_dict()
    allow = ["llm.lm_head.weight"] if model.llm.config.get_text_config().tie_word_embeddings else []
    check_state_dict(expected, pam_state, source=source, allow_missing=allow)
    model.load_state_dict(pam_state, strict=False)
    if sam2_state:
        load_state_dict_strict(model.sam2.model, sam2_state, source=f"{source} (vision tower)")
    elif model.config.sam2.checkpoint is None:
        raise CheckpointMismatchError(f"{source} has no SAM 2 weights and sam2.checkpoint is not set")


def read_released_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a released folder (``model.safetensors`` or an index of shards)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_tensors(folder / shard))
        return state
    single = folder / "model.safetensors"
    if single.is_file():
        return load_tensors(single)
    raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def released_llm_config(folder: str | Path) -> dict:
    """The Qwen2 config inside a released ``llava_qwen`` config.json."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    raw = json.loads(path.read_text())
    cfg = {k: v for k, v in raw.items() if not k.startswith(_WRAPPER_CONFIG_PREFIXES) and not k.startswith("_")}
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype", "auto_map"):
        cfg.pop(k, None)
    cfg["model_type"] = "qwen2"
    return cfg


def released_pam_config(
    folder: str | Path, *, sam2_checkpoint: str | None = None, base: PAMConfig | None = None, dtype: str = "bfloat16"
) -> PAMConfig:
    """The PAMConfig of a released folder: ``base`` (default: the paper's) for the non-LLM settings,
    the LLM architecture from the folder's config.json. :func:`pam.api.load_released_pam` builds it."""
    config = copy.deepcopy(base) if base is not None else PAMConfig()
    config.llm = LLMConfig(name_or_path=None, config=released_llm_config(Path(folder)), dtype=dtype)
    if sam2_checkpoint is not None:
        config.sam2.checkpoint = sam2_checkpoint
    return config
