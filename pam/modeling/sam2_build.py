"""Build SAM 2.1 from sam2's own YAML configs (the one place that imports sam2 first)."""

from __future__ import annotations

from importlib import resources

from .config import SAM2Config


def import_sam2():
    """Import sam2 without leaving its Hydra initialisation behind.

    ``sam2/__init__.py`` initialises Hydra's global state with its own config module, which breaks
    any ``@hydra.main`` application started afterwards ("GlobalHydra is already initialized"). We
    build SAM 2 from its YAML with OmegaConf instead, so that state is cleared right after import.
    Every ``pam`` module that needs sam2 calls this first. Returns ``sam2.sam2_video_predictor``.
    """
    from hydra.core.global_hydra import GlobalHydra

    was_initialized = GlobalHydra.instance().is_initialized()
    import sam2  # noqa: F401  (side effect: may initialise GlobalHydra)
    from sam2 import sam2_video_predictor

    if not was_initialized and GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    return sam2_video_predictor



# Settings that sam2's `build_sam2_video_predictor` applies on top of the YAML (its
# "apply_postprocessing"); we build from the YAML ourselves, so we apply them here.
_POSTPROCESSING = {
    "sam_mask_decoder_extra_args": {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    },
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
}


def sam2_model_config(variant: str, image_size: int):
    """sam2's own YAML for ``variant`` as an OmegaConf node, set up for ``image_size``."""
    from omegaconf import OmegaConf

    path = resources.files("sam2") / "configs" / "sam2.1" / f"{variant}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"sam2 has no config {variant!r} (looked for {path})")
    cfg = OmegaConf.load(str(path)).model
    cfg._target_ = "pam.modeling.sam2_video.TensorVideoPredictor"
    cfg = OmegaConf.merge(cfg, _POSTPROCESSING)
    cfg.image_size = image_size
    side = image_size // 16
    for attn in ("self_attention", "cross_attention"):
        cfg.memory_attention.layer[attn].feat_sizes = [side, side]
    if "compile_image_encoder" in cfg:
        cfg.compile_image_encoder = False
    if not _has_sam2_extension():
        # sam2 would print an error and skip hole filling on every frame; skip it quietly instead
        cfg.fill_hole_area = 0
    return cfg


def _has_sam2_extension() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def build_sam2_model(cfg: SAM2Config):
    """A randomly initialised SAM 2.1 model: sam2's video predictor (also a full SAM2Base), as
    :class:`~pam.modeling.sam2_video.TensorVideoPredictor`. ``cfg.checkpoint`` is not read here;
    :func:`pam.api.build_pam` loads it with :mod:`pam.checkpoints.sam2`."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = sam2_model_config(cfg.variant, cfg.image_size)
    OmegaConf.resolve(node)
    return instantiate(node, _recursive_=True)
