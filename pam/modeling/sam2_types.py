"""SAM 2 prompt and feature types: a region's prompt, encoded images and a decoder pass's outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def mask_input_from_binary(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A binary (H, W) region mask at any resolution -> SAM 2's (1, size, size) dense mask input,
    resized as SAM 2 resizes mask prompts (bilinear, antialiased)."""
    m = torch.as_tensor(mask).float()[None, None]
    return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


@dataclass
class RegionPrompt:
    """One region's prompt, in SAM 2 input coordinates (pixels of the ``image_size`` square).

    Any mix of points, a box and a low-resolution mask. As in SAM 2, the box enters the prompt
    encoder as two corner points (labels 2 and 3) placed before the clicked points.
    """

    point_coords: torch.Tensor | None = None  # (P, 2) float xy
    point_labels: torch.Tensor | None = None  # (P,) int: 1 positive, 0 negative
    box: torch.Tensor | None = None  # (4,) float xyxy
    mask_input: torch.Tensor | None = None  # (1, 4E, 4E) float, SAM 2's dense mask input

    def __post_init__(self) -> None:
        if (self.point_coords is None) != (self.point_labels is None):
            raise ValueError("RegionPrompt: point_coords and point_labels go together")
        if self.point_coords is None and self.box is None and self.mask_input is None:
            raise ValueError("RegionPrompt: give points, a box or a mask")
        if self.point_coords is not None and (
            self.point_coords.ndim != 2
            or self.point_coords.shape[-1] != 2
            or self.point_labels.shape != self.point_coords.shape[:1]
        ):
            raise ValueError(
                f"RegionPrompt: points must be (P, 2) with (P,) labels, got {tuple(self.point_coords.shape)} "
                f"and {tuple(self.point_labels.shape)}"
            )
        if self.box is not None and self.box.shape != (4,):
            raise ValueError(f"RegionPrompt: box must be (4,) xyxy, got {tuple(self.box.shape)}")

    def sparse_points(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        coords, labels = [], []
        if self.box is not None:
            coords.append(self.box.float().reshape(2, 2))
            labels.append(torch.tensor([2, 3], dtype=torch.int32))
        if self.point_coords is not None:
            coords.append(self.point_coords.float())
            labels.append(self.point_labels.to(torch.int32))
        if not coords:
            return None
        return torch.cat(coords), torch.cat([l.to(coords[0].device) for l in labels])

    def signature(self) -> tuple[int, bool]:
        """Regions with the same signature can share one batched decoder call exactly."""
        pts = self.sparse_points()
        return (0 if pts is None else pts[0].shape[0], self.mask_input is not None)

    def to(self, device) -> RegionPrompt:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return RegionPrompt(move(self.point_coords), move(self.point_labels), move(self.box), move(self.mask_input))


@dataclass
class ImageFeatures:
    """SAM 2 encoder output for a batch of images, as SAM2ImagePredictor keeps it."""

    image_embed: torch.Tensor  # (B, 256, E, E), with no_mem_embed added
    high_res_feats: list[torch.Tensor]  # [(B, 32, 4E, 4E), (B, 64, 2E, 2E)]

    def select(self, index: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(self.image_embed[index], [f[index] for f in self.high_res_feats])


@dataclass
class DecoderOutput:
    """Per region: SAM 2's outputs plus the perceiver's inputs."""

    mask_logits: torch.Tensor  # (R, 1, 4E, 4E) low-res logits of the returned mask
    iou_scores: torch.Tensor  # (R, 1) predicted IoU of the returned mask
    object_score_logits: torch.Tensor  # (R, 1)
    image_embedding: torch.Tensor  # (R, 256, E, E) after the two-way transformer
    mask_tokens: torch.Tensor  # (R, 2, 256): [stability-chosen, single-mask token 0]
    all_mask_logits: torch.Tensor  # (R, 4, 4E, 4E): token 0, then the three multimask outputs
    all_iou_scores: torch.Tensor  # (R, 4)
