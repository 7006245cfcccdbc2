"""Teach a debug-size SAM 2 to segment and track the synthetic shapes, in seconds on a CPU.

No machine here can download SAM 2.1 weights, and a randomly initialised SAM 2 draws a striped
pattern over the whole image and does not follow objects. For the quick-start (and for tests that
need a tracked mask to move with its object) this module teaches the debug SAM 2 just enough:

- the memory-attention layers' residual branches are zeroed (attention output projections and the
  MLP's last linear), so a tracked frame's memory-conditioned features are the frame's own
  features, normalised by the block's final LayerNorm, whatever the memory holds;
- the prompt encoder and mask decoder are trained on frozen (random) image-encoder features of
  generated frames, each with one coloured shape (the quick-start's shapes, plus random colours,
  sizes and turns) on a plain background with small grey distractors or on dark noise, to output
  that shape's mask:
  - prompted (a box, 1 to 4 points inside the shape, or a mask) through the image path PAM uses
    (the conditioning-frame features with ``no_mem_embed``, multimask decoding, mask token 0
    returned, the best of tokens 1-3 also trained, the IoU head regressed on the true IoU);
  - without any prompt on the memory-conditioned features, as sam2 decodes tracked frames.
  The object-score head is trained to say "present".

Everything runs through sam2's own modules (``forward_image``, ``_prepare_backbone_features``,
``memory_attention``, ``sam_prompt_encoder``, ``sam_mask_decoder``, ``_forward_sam_heads``); tracking
itself stays sam2's ``propagate_in_video``. The image encoder stays random: the masks are right on
the synthetic shapes, not on natural images.

:func:`prepare_taught_sam2` runs before training when the config has a ``sam2_teach`` section and
writes an official-format SAM 2 checkpoint (``{"model": state_dict}``) at ``model.sam2.checkpoint``;
it does nothing when that file exists.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.synthetic_shapes import BACKGROUNDS, CATEGORIES, DISTRACTOR_RGB, SHAPES, shape_mask

log = logging.getLogger("pam.train")


@dataclass
class SAM2TeachConfig:
    steps: int = 100  # optimiser steps on the prompt encoder and mask decoder
    batch_size: int = 8  # frames per step
    num_frames: int = 48  # distinct generated frames (each encoded once by the frozen image encoder)
    frame_size: int = 128  # side of a generated frame (resized to SAM 2's input like any image)
    lr: float = 1.0e-3  # AdamW learning rate
    seed: int = 0  # seeds the random SAM 2 (prepare_taught_sam2), the frames and the batches
    tracked_every: int = 3  # every N-th step trains the unprompted, memory-conditioned (tracked) decoding
    mask_prompt_share: float = 0.1  # share of prompted steps with a mask prompt (the rest: half box, half points)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_frames", "tracked_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"sam2_teach.{name} must be >= 1, got {getattr(self, name)}")
        if self.frame_size < 32:
            raise ValueError(f"sam2_teach.frame_size must be >= 32, got {self.frame_size}")
        if not 0.0 <= self.mask_prompt_share <= 1.0:
            raise ValueError(f"sam2_teach.mask_prompt_share must lie in [0, 1], got {self.mask_prompt_share}")
        if self.lr <= 0:
            raise ValueError(f"sam2_teach.lr must be > 0, got {self.lr}")


@dataclass
class TeachResult:
    iou: float  # mean IoU (logits > 0, low resolution) with the truth over the last 10 steps
    prompted_iou: float  # the same, prompted steps only (mask token 0)
    tracked_iou: float  # the same, unprompted tracked steps only
    seconds: float


def teaching_frame(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame with one coloured shape: (RGB uint8 (size, size, 3), its mask (size, size) bool).
    Half the frames look like the quick-start's (plain background, small grey distractors, a
    category colour), half are dark noise with a random bright colour."""
    plain = rng.random() < 0.5
    if plain:
        img = np.empty((size, size, 3), np.uint8)
        img[:] = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))][1]
    else:
        img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
    diameter = float(rng.uniform(0.15, 0.6)) * size
    r = diameter / 2
    center = (float(rng.uniform(r + 1, size - r - 1)), float(rng.uniform(r + 1, size - r - 1)))
    mask = shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], center, r, size, size, float(rng.uniform(-45, 45)))
    if plain:
        for _ in range(int(rng.integers(0, 3))):
            d = float(rng.uniform(0.06, 0.14)) * size
            c = (float(rng.uniform(d / 2 + 1, size - d / 2 - 1)), float(rng.uniform(d / 2 + 1, size - d / 2 - 1)))
            img[shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], c, d / 2, size, size) & ~mask] = DISTRACTOR_RGB
        colour = np.array(CATEGORIES[int(rng.integers(len(CATEGORIES)))].rgb)
    else:
        colour = rng.integers(0, 256, 3)
        colour[rng.integers(3)] = rng.integers(200, 256)
    img[mask] = colour
    if not mask.any():  # a shape too thin to rasterise: fall back to a square
        mask[size // 4 : size // 2, size // 4 : size // 2] = True
        img[mask] = colour
    return img, mask


def make_memory_transparent(model) -> None:
    """Zero the residual branches of sam2's memory attention: tracked features = the frame's own."""
    for layer in model.memory_attention.layers:
        for linear in (layer.self_attn.out_proj, layer.cross_attn_image.out_proj, layer.linear2):
            torch.nn.init.zeros_(linear.weight)
            torch.nn.init.zeros_(linear.bias)


def _mask_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per mask (B, K): binary cross-entropy + dice, as SAM's recipe weights them (1:1 here)."""
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((2, 3)) + 1) / (prob.sum((2, 3)) + target.sum((2, 3)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none").mean((2, 3))
    return bce + dice


def _iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = logits > 0
    truth = target.expand_as(pred) > 0
    return (pred & truth).sum((2, 3)).float() / (pred | truth).sum((2, 3)).clamp(min=1).float()


def _prompt_batch(
    rng: np.random.Generator, masks: np.ndarray, kind: str, scale: float, max_points: int = 4
) -> torch.Tensor | tuple:
    """Box corners (labels 2, 3) or ``n`` positive points inside each mask, in SAM 2 input pixels."""
    if kind == "box":
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        coords = torch.tensor(np.asarray(boxes, np.float32) * scale).reshape(-1, 2, 2)
        return coords, torch.tensor([[2, 3]] * len(masks), dtype=torch.int32)
    n = int(rng.integers(1, max_points + 1))
    pts = []
    for m in masks:
        ys, xs = np.nonzero(m)
        pick = rng.integers(len(xs), size=n)
        pts.append(np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1))
    return torch.tensor(np.asarray(pts, np.float32) * scale), torch.ones(len(masks), n, dtype=torch.int32)


def teach_sam2(sam2_model, preprocess, config: SAM2TeachConfig | None = None) -> TeachResult:
    """Teach ``sam2_model`` (sam2's video predictor, e.g. ``bundle.model.sam2.model``) in place.

    ``preprocess``: (T, H, W, 3) uint8 frames -> (T, 3, S, S) model input (``processor.preprocess_video``).
    The model is left in eval mode with every parameter frozen."""
    cfg = config or SAM2TeachConfig()
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = sam2_model
    make_memory_transparent(model)
    size = cfg.frame_size
    frames = [teaching_frame(rng, size) for _ in range(cfg.num_frames)]
    frame_masks = np.stack([m for _, m in frames])
    pixels = preprocess(np.stack([f for f, _ in frames]))
    with torch.no_grad():
        feats, poss = [], []
        for i in range(0, cfg.num_frames, 8):
            _, vf, vp, sizes = model._prepare_backbone_features(model.forward_image(pixels[i : i + 8]))
            feats.append(vf)
            poss.append(vp)
    levels = [torch.cat([f[k] for f in feats], 1) for k in range(len(feats[0]))]  # (HW, N, C) per level
    top_pos = torch.cat([p[-1] for p in poss], 1)
    (h0, w0), (h1, w1), (h, w) = sizes
    with torch.no_grad():  # a tracked frame's features: the memory attention (frozen, transparent) over the frame
        memory = torch.zeros(h * w, cfg.num_frames, model.mem_dim)
        tracked_top = model.memory_attention(
            curr=[levels[-1]], curr_pos=[top_pos], memory=memory, memory_pos=memory, num_obj_ptr_tokens=0
        )
    low = tuple(model.sam_prompt_encoder.mask_input_size)  # the decoder's low-res mask size
    truth = F.interpolate(torch.tensor(frame_masks)[:, None].float(), size=low, mode="area")
    truth = (truth > 0.5).float()
    mask_prompts = F.interpolate(torch.tensor(frame_masks)[:, None].float(), size=low, mode="bilinear", antialias=True)
    scale = model.image_size / size
    channels = levels[-1].shape[-1]

    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.sam_mask_decoder.parameters(), *model.sam_prompt_encoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, foreach=True)
    history: list[tuple[bool, float]] = []
    model.sam_mask_decoder.train()
    model.sam_prompt_encoder.train()
    try:
        for step in range(cfg.steps):
            b = cfg.batch_size
            idx = torch.randint(0, cfg.num_frames, (b,), generator=gen)
            target = truth[idx]
            high_res = [
                levels[0][:, idx].permute(1, 2, 0).reshape(b, -1, h0, w0),
                levels[1][:, idx].permute(1, 2, 0).reshape(b, -1, h1, w1),
            ]
            current = levels[-1][:, idx]
            tracked = step % cfg.tracked_every == 0
            if tracked:  # a later frame: memory-conditioned features, no prompt, one mask (sam2's tracking path)
                current = tracked_top[:, idx]
                out = model._forward_sam_heads(
                    backbone_features=current.permute(1, 2, 0).reshape(b, channels, h, w),
                    point_inputs=None,
                    high_res_features=high_res,
                    multimask_output=False,
                )
                logits, object_score = out[0], out[-1]
                loss = _mask_losses(logits, target).mean()
                quality = _iou(logits, target)
            else:  # the prompted frame, as FrozenSAM2 decodes an image region
                if model.directly_add_no_mem_embed:
                    current = current + model.no_mem_embed
                kind = "mask" if rng.random() < cfg.mask_prompt_share else ("box" if rng.random() < 0.5 else "points")
                points = None if kind == "mask" else _prompt_batch(rng, frame_masks[idx.numpy()], kind, scale)
                dense = mask_prompts[idx] if kind == "mask" else None
                sparse_emb, dense_emb = model.sam_prompt_encoder(points=points, boxes=None, masks=dense)
                # all four masks (token 0, then the multimask tokens), as FrozenSAM2 reads them
                logits, iou_pred, _tokens, object_score = model.sam_mask_decoder.predict_masks(
                    image_embeddings=current.permute(1, 2, 0).reshape(b, channels, h, w),
                    image_pe=model.sam_prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse_emb,
                    dense_prompt_embeddings=dense_emb,
                    repeat_image=False,
                    high_res_features=high_res,
                )
                per_mask = _mask_losses(logits, target)  # (B, 4): token 0, then the multimask tokens
                true_iou = _iou(logits, target).detach()
                loss = per_mask[:, 0].mean() + per_mask[:, 1:].min(dim=1).values.mean() + F.mse_loss(iou_pred, true_iou)
                quality = true_iou[:, :1]
            loss = loss + F.binary_cross_entropy_with_logits(object_score, torch.ones_like(object_score))
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append((tracked, float(quality.mean())))
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    last = history[-10:]

    def mean(rows):
        return float(np.mean([q for _, q in rows])) if rows else float("nan")

    return TeachResult(
        iou=mean(last),
        prompted_iou=mean([r for r in history[-3 * cfg.tracked_every * 4 :] if not r[0]]),
        tracked_iou=mean([r for r in history[-3 * cfg.tracked_every * 4 :] if r[0]]),
        seconds=time.perf_counter() - start,
    )


def save_taught_sam2(sam2_model, path: str | Path) -> Path:
    """Write ``sam2_model`` as an official SAM 2 checkpoint (``{"model": state_dict}``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": sam2_model.state_dict()}, str(tmp))
    os.replace(tmp, path)
    return path


def teach_debug_sam2(model_config, path: str | Path, config: SAM2TeachConfig | None = None) -> TeachResult:
    """Build the random SAM 2 of ``model_config`` (a PAMConfig; its ``sam2.checkpoint`` is ignored),
    teach it and save it at ``path``."""
    import dataclasses

    from ..api import build_pam

    cfg = config or SAM2TeachConfig()
    model_config = dataclasses.replace(model_config, sam2=dataclasses.replace(model_config.sam2, checkpoint=None))
    torch.manual_seed(cfg.seed)
    bundle = build_pam(model_config)
    result = teach_sam2(bundle.model.sam2.model, bundle.processor.preprocess_video, cfg)
    save_taught_sam2(bundle.model.sam2.model, path)
    return result


def prepare_taught_sam2(cfg) -> Path | None:
    """Before training: when the run config has a ``sam2_teach`` section, teach the model's SAM 2 and
    save it at ``model.sam2.checkpoint``, unless that file exists already. Returns the path, or None
    without a ``sam2_teach`` section."""
    from omegaconf import OmegaConf

    from ..modeling.config import PAMConfig
    from ..utils.config import build_config

    section = cfg.get("sam2_teach")
    if not section:
        return None
    path = cfg.model.sam2.get("checkpoint")
    if not path:
        raise ValueError(
            "sam2_teach is set but model.sam2.checkpoint is null: give the path where the taught SAM 2 is written"
        )
    path = Path(path)
    if path.is_file():
        log.info("taught SAM 2: %s exists, not teaching again", path)
        return path
    teach = build_config(SAM2TeachConfig, OmegaConf.to_container(section, resolve=True), "sam2_teach.")
    model_config = PAMConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    result = teach_debug_sam2(model_config, path, teach)
    log.info(
        "taught SAM 2 in %.0f s (%d steps): IoU %.3f prompted, %.3f tracked; saved %s",
        result.seconds,
        teach.steps,
        result.prompted_iou,
        result.tracked_iou,
        path,
    )
    return path
