"""The public entry points: build a PAM model from its config, or load one from a folder.

Building is here, above :mod:`pam.modeling` and :mod:`pam.checkpoints`: the model is built first,
then the checkpoint adapters fill the model they are handed (SAM 2 ``.pt`` files, PAM safetensors
folders, released LLaVA-style folders). :func:`load_pam` is the one loader every front-end uses
(predictor, server, demo, evaluation, CLI): it takes a PAM checkpoint or export (``meta.json``) or
a released upstream folder (``config.json`` of a ``llava_qwen`` model).
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

__all__ = [
    "PAMBundle",
    "build_pam",
    "build_sam2",
    "load_pam",
    "load_released_pam",
    "read_model_config",
    "tokenizer_for",
]


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


def build_sam2(cfg: SAM2Config, *, num_mask_tokens: int = 2) -> FrozenSAM2:
    """Frozen SAM 2.1, loaded strictly from ``cfg.checkpoint`` when it is set; it hands the
    perceiver the first ``num_mask_tokens`` of [stability-chosen, single-mask token 0]."""
    sam2 = FrozenSAM2.from_config(cfg, num_mask_tokens=num_mask_tokens)
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
    model = PAM.from_config(
        config,
        image_token_id=processor.image_token_id,
        sam2=build_sam2(config.sam2, num_mask_tokens=config.perceiver.num_mask_tokens),
    )
    return PAMBundle(model=model, tokenizer=tokenizer, processor=processor)


def read_model_config(path: str | Path) -> PAMConfig:
    """A PAMConfig from a ``.json`` (``pam_config.json``) or ``.yaml`` file (``configs/model/*.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model config {path} not found")
    if path.suffix in (".yaml", ".yml"):
        from .utils.config import load_group_yaml

        return PAMConfig.from_dict(load_group_yaml(path, schema=PAMConfig().to_dict()))
    return PAMConfig.load(path)


def is_released_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return not (folder / "meta.json").is_file() and (folder / "config.json").is_file()


def load_pam(
    folder: str | Path,
    *,
    device: str = "cpu",
    sam2_checkpoint: str | None = None,
    base_config: PAMConfig | str | Path | None = None,
    dtype: str = "bfloat16",
    sam2_weights: str = "folder",
) -> PAMBundle:
    """Load a model folder strictly: a PAM checkpoint or export written by ``save_pam`` /
    ``export_pam`` (``meta.json``), or a released PAM folder (``config.json``; see
    :func:`load_released_pam` for ``sam2_checkpoint``, ``base_config``, ``dtype``, ``sam2_weights``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such checkpoint folder")
    if (folder / "meta.json").is_file():
        meta = read_meta(folder)
        config = PAMConfig.load(folder / "pam_config.json")
        bundle = build_pam(config, tokenizer=load_tokenizer(folder / "tokenizer", config.image_token))
        load_pam_weights(bundle.model, folder, meta)
    elif (folder / "config.json").is_file():
        if base_config is not None and not isinstance(base_config, PAMConfig):
            base_config = read_model_config(base_config)
        bundle = load_released_pam(
            folder, sam2_checkpoint=sam2_checkpoint, base=base_config, dtype=dtype, sam2_weights=sam2_weights
        )
    else:
        raise FileNotFoundError(
            f"{folder}: neither a PAM checkpoint (meta.json) nor a released PAM folder (config.json)"
        )
    bundle.model.to(device)
    return bundle


def load_released_pam(
    folder: str | Path,
    *,
    sam2_checkpoint: str | None = None,
    base: PAMConfig | None = None,
    dtype: str = "bfloat16",
    sam2_weights: str = "folder",
) -> PAMBundle:
    """Build and load a released PAM folder (Perceive-Anything/PAM-1.5B or PAM-3B).

    ``base`` gives the non-LLM settings (defaults: the paper's); the LLM architecture comes from
    the folder's config.json and the tokenizer from the folder.

    SAM 2 weights, explicit precedence (logged): with ``sam2_weights="folder"`` (default, as
    upstream, whose loader overwrites the vision tower's ``.pt`` with the folder's weights) the
    folder's ``model.vision_tower.*`` tensors are used when present and ``sam2_checkpoint`` only
    when the folder has none; with ``"checkpoint"``, ``sam2_checkpoint`` is used and the folder's
    SAM 2 tensors are ignored.
    """
    if sam2_weights not in ("folder", "checkpoint"):
        raise ValueError(f"sam2_weights must be 'folder' or 'checkpoint', got {sam2_weights!r}")
    state = read_released_folder(folder)
    sam2_prefix = "model.vision_tower.sam2_model_predictor."
    folder_has_sam2 = any(k.startswith(sam2_prefix) for k in state)
    if sam2_weights == "checkpoint":
        if sam2_checkpoint is None:
            raise ValueError("sam2_weights='checkpoint' needs sam2_checkpoint")
        state = {k: v for k, v in state.items() if not k.startswith(sam2_prefix)}
        log.info(
            "SAM 2 weights: %s (the folder's %s are ignored)",
            sam2_checkpoint,
            "vision-tower tensors" if folder_has_sam2 else "missing vision tower",
        )
    elif folder_has_sam2:
        if sam2_checkpoint is not None:
            log.warning(
                "SAM 2 weights: the released folder %s has its own vision tower; "
                "it takes precedence over sam2_checkpoint=%s (pass sam2_weights='checkpoint' to use that file)",
                folder,
                sam2_checkpoint,
            )
        else:
            log.info("SAM 2 weights: the released folder's vision tower (%s)", folder)
        sam2_checkpoint = None  # not read: the folder's tensors replace it
    else:
        log.info("SAM 2 weights: %s (the released folder has no vision tower)", sam2_checkpoint)
    config = released_pam_config(folder, sam2_checkpoint=sam2_checkpoint, base=base, dtype=dtype)
    bundle = build_pam(config, tokenizer=load_tokenizer(folder, config.image_token))
    load_released_state_dict(bundle.model, state, source=str(folder))
    return bundle
