"""A debug-size SAM 2 taught, in seconds, to track one bright shape through sam2's own video code.

A randomly initialised SAM 2 does not follow objects, so streaming tests that need a tracked mask
to move with the object use this instead of downloading weights:

- the memory-attention layers' residual branches are zeroed (attention output projections and the
  MLP's last linear), so a tracked frame's memory-conditioned features are the frame's own
  features, normalised by the block's final LayerNorm, whatever the memory holds;
- the prompt encoder and mask decoder are trained on frozen (random) image-encoder features of
  generated frames, each with one shape of a random colour and size on dark noise, to output
  that shape's mask: box-prompted on the conditioning-frame features (``no_mem_embed`` added, as
  sam2 does), single- and multi-mask, and without any prompt on the memory-conditioned features,
  as sam2 decodes tracked frames. The object-score head is trained to say "present".

Everything runs through sam2's modules (``forward_image``, ``_prepare_backbone_features``,
``memory_attention``, ``_forward_sam_heads``); tracking itself is sam2's ``propagate_in_video``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def shape_frame(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame with one square of random colour (one channel >= 200) on dark noise:
    (image uint8 (size, size, 3), mask bool, box xyxy)."""
    img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
    s = int(rng.integers(16, 40))
    x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
    colour = rng.integers(0, 256, 3)
    colour[rng.integers(3)] = rng.integers(200, 256)
    img[y : y + s, x : x + s] = colour
    mask = np.zeros((size, size), bool)
    mask[y : y + s, x : x + s] = True
    return img, mask, np.array([x, y, x + s, y + s], np.float32)


def _make_memory_transparent(model) -> None:
    for layer in model.memory_attention.layers:
        for linear in (layer.self_attn.out_proj, layer.cross_attn_image.out_proj, layer.linear2):
            torch.nn.init.zeros_(linear.weight)
            torch.nn.init.zeros_(linear.bias)


def teach_to_track(sam2_model, processor, *, num_frames: int = 48, steps: int = 150, batch_size: int = 8, lr: float = 1e-3, seed: int = 0) -> float:
    """Teach ``sam2_model`` (sam2's video predictor, e.g. ``bundle.model.sam2.model``) in place;
    returns the mean IoU of the last 10 training steps' masks (logits > 0) with the truth."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = sam2_model
    _make_memory_transparent(model)
    size = 128
    frames = [shape_frame(rng, size) for _ in range(num_frames)]
    pixels = processor.preprocess_video(np.stack([f[0] for f in frames]))
    with torch.no_grad():
        feats, poss = [], []
        for i in range(0, num_frames, 8):
            _, vf, vp, sizes = model._prepare_backbone_features(model.forward_image(pixels[i : i + 8]))
            feats.append(vf)
            poss.append(vp)
    levels = [torch.cat([f[k] for f in feats], 1) for k in range(len(feats[0]))]  # (HW, N, C) per level
    top_pos = torch.cat([p[-1] for p in poss], 1)
    (h0, w0), (h1, w1), (h, w) = sizes
    low = model.sam_prompt_encoder.mask_input_size  # the decoder's low-res mask size
    truth = F.interpolate(torch.tensor(np.stack([f[1] for f in frames]))[:, None].float(), size=tuple(low), mode="area")
    truth = (truth > 0.5).float()
    boxes = torch.tensor(np.stack([f[2] for f in frames])) * (model.image_size / size)

    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.sam_mask_decoder.parameters(), *model.sam_prompt_encoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    channels = levels[-1].shape[-1]
    ious = []
    model.train()
    try:
        for step in range(steps):
            idx = torch.randint(0, num_frames, (batch_size,), generator=gen)
            tracked, multimask = step % 3 == 0, step % 3 == 2
            current = levels[-1][:, idx]
            if tracked:  # a later frame: memory-conditioned features, no prompt
                memory = torch.zeros(h * w, batch_size, model.mem_dim)
                current = model.memory_attention(curr=[current], curr_pos=[top_pos[:, idx]], memory=memory, memory_pos=memory, num_obj_ptr_tokens=0)
                points = None
            else:  # the prompted frame: no memory, the box as SAM 2's two corner points
                current = current + model.no_mem_embed
                points = {"point_coords": boxes[idx].reshape(-1, 2, 2), "point_labels": torch.tensor([[2, 3]] * batch_size, dtype=torch.int32)}
            high_res = [
                levels[0][:, idx].permute(1, 2, 0).reshape(batch_size, -1, h0, w0),
                levels[1][:, idx].permute(1, 2, 0).reshape(batch_size, -1, h1, w1),
            ]
            out = model._forward_sam_heads(
                backbone_features=current.permute(1, 2, 0).reshape(batch_size, channels, h, w),
                point_inputs=points,
                high_res_features=high_res,
                multimask_output=multimask,
            )
            logits, object_score = out[0], out[-1]
            target = truth[idx].expand_as(logits)
            prob = logits.sigmoid()
            dice = 1 - (2 * (prob * target).sum((2, 3)) + 1) / (prob.sum((2, 3)) + target.sum((2, 3)) + 1)
            loss = F.binary_cross_entropy_with_logits(logits, target) + dice.mean()
            loss = loss + F.binary_cross_entropy_with_logits(object_score, torch.ones_like(object_score))
            opt.zero_grad()
            loss.backward()
            opt.step()
            hit = (logits > 0) & (target > 0)
            ious.append(float(hit.sum() / ((logits > 0) | (target > 0)).sum().clamp(min=1)))
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return float(np.mean(ious[-10:]))
