"""The public entry points: build a PAM model from its config, or load one from a checkpoint folder.

Building is here, above :mod:`pam.modeling` and :mod:`pam.checkpoints`: the model is built first,
then the checkpoint adapters fill the model they are handed (SAM 2 ``.pt`` files, PAM safetensors
folders, released LLaVA-style folders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoints.pam_checkpoint import load_pam_weights, read_meta
from .checkpoints.released import load_released_state_dict, read_released_folder, released_pam_config
from .checkpoints.sam2 import load_sam2_checkpoint
from .modeling.config import PAMConfig, SAM2Config
from .modeling.pam import PAM
from .modeling.sam2_encoder import FrozenSAM2
from .processing.processor import PAMProcessor
from .processing.tokenizer import build_debug_tokenizer, load_tokenizer

__all__ = ["PAMBundle", "build_pam", "build_sam2", "load_pam", "load_released_pam", "tokenizer_for"]


@dataclass
class PAMBundle:
    model: PAM
    tokenizer: object
    processor: PAMProcessor


def tokenizer_for(config: PAMConfig):
    """The config's tokenizer folder, else the LLM folder, else (a config-built LLM) the debug one."""
    path = config.llm.tokenizer or config.llm.name_or_path
    if path is not None:
        return load_tokenizer(path, config.image_token)
    return build_debug_tokenizer(image_token=config.image_token)


def build_sam2(cfg: SAM2Config) -> FrozenSAM2:
    """Frozen SAM 2.1, loaded strictly from ``cfg.checkpoint`` when it is set."""
    sam2 = FrozenSAM2.from_config(cfg)
    if cfg.checkpoint is not None:
        load_sam2_checkpoint(sam2.model, cfg.checkpoint)
        sam2.freeze()
    return sam2


def build_pam(config: PAMConfig, tokenizer=None) -> PAMBundle:
    """Model, tokenizer and processor for ``config`` (SAM 2 loaded from ``config.sam2.checkpoint``)."""
    config.validate()
    tokenizer = tokenizer if tokenizer is not None else tokenizer_for(config)
    vocab = config.llm.config.get("vocab_size") if config.llm.config else None
    if vocab is not None and len(tokenizer) > vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but llm.config.vocab_size is {vocab}")
    processor = PAMProcessor(config=config, tokenizer=tokenizer)
    model = PAM.from_config(config, image_token_id=processor.image_token_id, sam2=build_sam2(config.sam2))
    return PAMBundle(model=model, tokenizer=tokenizer, processor=processor)


def load_pam(folder: str | Path, *, device: str = "cpu") -> PAMBundle:
    """Load a folder written by ``save_pam`` / ``export_pam`` strictly."""
    folder = Path(folder)
    meta = read_meta(folder)
    config = PAMConfig.load(folder / "pam_config.json")
    bundle = build_pam(config, tokenizer=load_tokenizer(folder / "tokenizer", config.image_token))
    load_pam_weights(bundle.model, folder, meta)
    bundle.model.to(device)
    return bundle


def load_released_pam(folder: str | Path, *, sam2_checkpoint: str | None = None, base: PAMConfig | None = None, dtype: str = "bfloat16") -> PAMBundle:
    """Build and load a released PAM folder (Perceive-Anything/PAM-1.5B or PAM-3B).

    ``base`` gives the non-LLM settings (defaults: the paper's); the LLM architecture comes from
    the folder's config.json and the tokenizer from the folder.
    """
    config = released_pam_config(folder, sam2_checkpoint=sam2_checkpoint, base=base, dtype=dtype)
    bundle = build_pam(config, tokenizer=load_tokenizer(folder, config.image_token))
    load_released_state_dict(bundle.model, read_released_folder(folder), source=str(folder))
    return bundle
