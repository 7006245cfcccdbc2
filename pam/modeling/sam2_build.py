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


# Settings applied on top of sam2's YAML, per ``SAM2Config.tracking`` preset.
# "stock": what sam2's own `build_sam2_video_predictor` applies ("apply_postprocessing").
# "upstream": what the released PAM weights ran with. Upstream's SAM 2.1 YAML sets
# `multimask_output_in_sam: False` (so prompted and tracked frames, and the object pointer, use
# mask token 0), its mask decoder has the dynamic-stability fallback commented out (for stock
# sam2 that is `dynamic_multimask_via_stability=False`), and its video predictor has hole filling
# commented out (`fill_hole_area=0`). The perceiver's [stability-chosen, token 0] pair is
# computed by FrozenSAM2 from the decoder's raw outputs either way.
_STABILITY = {"dynamic_multimask_stability_delta": 0.05, "dynamic_multimask_stability_thresh": 0.98}
TRACKING_PRESETS = {
    "stock": {
        "sam_mask_decoder_extra_args": {"dynamic_multimask_via_stability": True, **_STABILITY},
        "binarize_mask_from_pts_for_mem_enc": True,
        "fill_hole_area": 8,
    },
    "upstream": {
        "sam_mask_decoder_extra_args": {"dynamic_multimask_via_stability": False, **_STABILITY},
        "binarize_mask_from_pts_for_mem_enc": True,
        "fill_hole_area": 0,
        "multimask_output_in_sam": False,
    },
}


def sam2_model_config(variant: str, image_size: int, tracking: str = "upstream"):
    """sam2's own YAML for ``variant`` as an OmegaConf node, set up for ``image_size`` with the
    ``tracking`` preset's settings (see ``TRACKING_PRESETS``)."""
    from omegaconf import OmegaConf

    path = resources.files("sam2") / "configs" / "sam2.1" / f"{variant}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"sam2 has no config {variant!r} (looked for {path})")
    cfg = OmegaConf.load(str(path)).model
    cfg._target_ = "pam.modeling.sam2_video.TensorVideoPredictor"
    if tracking not in TRACKING_PRESETS:
        raise ValueError(f"unknown SAM 2 tracking preset {tracking!r}; expected one of {sorted(TRACKING_PRESETS)}")
    cfg = OmegaConf.merge(cfg, TRACKING_PRESETS[tracking])
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

    node = sam2_model_config(cfg.variant, cfg.image_size, cfg.tracking)
    OmegaConf.resolve(node)
    return instantiate(node, _recursive_=True)
