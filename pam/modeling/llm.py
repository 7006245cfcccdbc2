"""The language model: any Hugging Face causal LM of the Qwen2 / Qwen2.5 / Qwen3 family."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from .config import LLMConfig

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_llm(cfg: LLMConfig) -> nn.Module:
    """Load ``cfg.name_or_path`` (a local folder; no remote code) or build a random model from
    ``cfg.config``."""
    dtype = _DTYPES[cfg.dtype]
    if cfg.name_or_path is not None:
        path = Path(cfg.name_or_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"LLM folder not found: {path}. Download the Hugging Face folder (e.g. Qwen/Qwen2.5-1.5B-Instruct) "
                "and point `llm.name_or_path` at it; PAM never downloads weights at run time."
            )
        hf_config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        _check_type(hf_config.model_type, str(path))
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, attn_implementation=cfg.attn_implementation, trust_remote_code=False
        )
    else:
        kwargs = dict(cfg.config)
        model_type = kwargs.pop("model_type")
        _check_type(model_type, "llm.config")
        hf_config = AutoConfig.for_model(model_type, **kwargs)
        hf_config._attn_implementation = cfg.attn_implementation
        model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def _check_type(model_type: str, source: str) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{source}: model_type {model_type!r} is not supported; PAM supports {SUPPORTED_MODEL_TYPES}")
