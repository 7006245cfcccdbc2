"""Frozen SAM 2.1 around the pinned ``sam2`` package.

Images: each image is encoded once (``encode_images``); each region then runs SAM 2's prompt
encoder and mask decoder (``decode``). Besides the mask logits and IoU scores, the decoder pass
yields the two inputs of the Semantic Perceiver:

* the image embedding after the decoder's two-way transformer (256 x E x E), read with a forward
  hook on ``sam_mask_decoder.transformer``;
* two of SAM 2's four mask tokens: first the token chosen by SAM 2's dynamic stability rule (the
  single-mask token 0 when its mask is stable, else the multimask token with the highest predicted
  IoU), then always the single-mask token 0.

Video: the same model doubles as ``SAM2VideoPredictor``; ``track_video`` prompts frame 0 and
propagates with SAM 2's memory, reading each later frame's decoder internals through the same
capture. Frame 0 goes through the image path, so a region's first frame is treated exactly like
an image. As in sam2's own decode of every frame, a region whose object score logit is not above 0
is absent: its masks are blanked to -1024 (no pixels), on the image path and frame 0 included.

Nothing here trains: the module is built in eval mode, every parameter has ``requires_grad=False``
and all calls run under ``torch.no_grad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.frozen import assert_frozen
from .config import SAM2Config
from .sam2_build import build_sam2_model
from .sam2_types import DecoderOutput, ImageFeatures, RegionPrompt, mask_input_from_binary
from .sam2_video import TensorVideoPredictor

NO_OBJ_SCORE = -1024.0  # sam2's logit for "no object" (sam2.modeling.sam2_base.NO_OBJ_SCORE)

__all__ = ["DecoderOutput", "FrozenSAM2", "ImageFeatures", "RegionPrompt", "build_sam2_model", "mask_input_from_binary"]


class _DecoderCapture:
    """Records the mask decoder's internals for every call made while it is active.

    ``predict_masks`` is wrapped on the instance (its outputs hold all four masks, IoUs and mask
    tokens before SAM 2 selects among them) and a forward hook on the two-way transformer records
    the updated image embedding. Both are removed on exit.
    """

    def __init__(self, decoder: nn.Module):
        self.decoder = decoder
        self.calls: list[dict] = []

    def __enter__(self) -> _DecoderCapture:
        original = self.decoder.predict_masks
        pending: dict = {}

        def hook(_module, _inputs, output):
            pending["src"] = output[1]

        def predict_masks(*args, **kwargs):
            masks, iou_pred, mask_tokens_out, object_score_logits = original(*args, **kwargs)
            src = pending.pop("src")
            b, n, c = src.shape
            e = int(round(n**0.5))
            self.calls.append(
                {
                    "masks": masks,
                    "iou": iou_pred,
                    "tokens": mask_tokens_out,
                    "obj": object_score_logits,
                    "src": src.transpose(1, 2).reshape(b, c, e, e),
                }
            )
            return masks, iou_pred, mask_tokens_out, object_score_logits

        self._handle = self.decoder.transformer.register_forward_hook(hook)
        self.decoder.predict_masks = predict_masks
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
        del self.decoder.predict_masks  # back to the class method


class FrozenSAM2(nn.Module):
    """SAM 2.1, frozen, exposing the encode / decode / track steps PAM needs."""

    def __init__(self, *, model: TensorVideoPredictor, mask_selection: str = "single", num_mask_tokens: int = 2):
        super().__init__()
        if num_mask_tokens not in (1, 2):
            raise ValueError(f"num_mask_tokens must be 1 or 2, got {num_mask_tokens}")
        self.model = model
        self.mask_selection = mask_selection
        self.num_mask_tokens = num_mask_tokens  # perceiver.num_mask_tokens: the first N of [stability-chosen, token 0]
        self.freeze()

    @classmethod
    def from_config(cls, cfg: SAM2Config, *, num_mask_tokens: int = 2) -> FrozenSAM2:
        return cls(model=build_sam2_model(cfg), mask_selection=cfg.mask_selection, num_mask_tokens=num_mask_tokens)

    # ----- freezing ---------------------------------------------------------------------------
    def freeze(self) -> None:
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenSAM2:
        """SAM 2 stays in eval mode whatever the parent module does."""
        super().train(False)
        return self

    def assert_frozen(self) -> None:
        assert_frozen(self.model, "SAM 2")

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def embedding_size(self) -> int:
        return self.model.image_size // 16

    @property
    def mask_input_size(self) -> int:
        return self.model.sam_prompt_encoder.mask_input_size[0]

    def _feat_sizes(self) -> list[tuple[int, int]]:
        s = self.image_size
        return [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    # ----- images -----------------------------------------------------------------------------
    @torch.no_grad()
    def features_from_backbone(self, backbone_out: dict) -> ImageFeatures:
        _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        b = vision_feats[-1].shape[1]
        feats = [f.permute(1, 2, 0).reshape(b, -1, *hw) for f, hw in zip(vision_feats, self._feat_sizes())]
        return ImageFeatures(image_embed=feats[-1], high_res_feats=feats[:-1])

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """Encode (B, 3, S, S) normalised images once."""
        s = self.image_size
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, s, s):
            raise ValueError(f"SAM 2 expects pixel_values of shape (B, 3, {s}, {s}), got {tuple(pixel_values.shape)}")
        return self.features_from_backbone(self.model.forward_image(pixel_values))

    @torch.no_grad()
    def decode(self, features: ImageFeatures, image_index: torch.Tensor, prompts: list[RegionPrompt]) -> DecoderOutput:
        """Run the prompt encoder and mask decoder for each region.

        ``image_index[r]`` says which encoded image region ``r`` belongs to. Regions whose prompts
        have the same number of sparse points (and mask or not) share one batched decoder call,
        which gives the same result as one call per region.
        """
        if len(prompts) != len(image_index):
            raise ValueError(f"{len(prompts)} prompts but {len(image_index)} image indices")
        groups: dict[tuple[int, bool], list[int]] = {}
        for r, p in enumerate(prompts):
            groups.setdefault(p.signature(), []).append(r)
        parts: dict[int, dict] = {}
        for (n_points, has_mask), members in groups.items():
            out = self._decode_group(
                features.select(image_index[members]), [prompts[r] for r in members], n_points > 0, has_mask
            )
            for i, r in enumerate(members):
                parts[r] = {k: v[i : i + 1] for k, v in out.items()}
        return DecoderOutput(**{k: torch.cat([parts[r][k] for r in range(len(prompts))]) for k in parts[0]})

    def _decode_group(
        self, feats: ImageFeatures, prompts: list[RegionPrompt], has_points: bool, has_mask: bool
    ) -> dict:
        device = feats.image_embed.device
        points = None
        if has_points:
            sparse = [p.to(device).sparse_points() for p in prompts]
            points = (torch.stack([c for c, _ in sparse]), torch.stack([l for _, l in sparse]))
        masks = torch.stack([p.mask_input.to(device).float() for p in prompts]) if has_mask else None
        sparse_emb, dense_emb = self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        with _DecoderCapture(self.model.sam_mask_decoder) as cap:
            self.model.sam_mask_decoder(
                image_embeddings=feats.image_embed,
                image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse_emb,
                dense_prompt_embeddings=dense_emb,
                multimask_output=True,
                repeat_image=False,
                high_res_features=feats.high_res_feats,
            )
        return self._select(cap.calls[-1])

    def _select(self, call: dict) -> dict:
        """Apply SAM 2's dynamic stability rule to one captured decoder call."""
        dec = self.model.sam_mask_decoder
        masks, iou, tokens = call["masks"], call["iou"], call["tokens"]
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = 1 + iou[:, 1:].argmax(dim=-1)
        stable = dec._get_stability_scores(masks[:, 0]) >= dec.dynamic_multimask_stability_thresh
        chosen = torch.where(stable, torch.zeros_like(best), best)
        returned = chosen if self.mask_selection == "stability" else torch.zeros_like(best)
        masks = self._blank_absent(masks, call["obj"])
        return {
            "mask_logits": masks[rows, returned].unsqueeze(1),
            "iou_scores": iou[rows, returned].unsqueeze(1),
            "object_score_logits": call["obj"],
            "image_embedding": call["src"],
            "mask_tokens": torch.stack([tokens[rows, chosen], tokens[:, 0]], dim=1)[:, : self.num_mask_tokens],
            "all_mask_logits": masks,
            "all_iou_scores": iou,
        }

    def _blank_absent(self, masks: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """SAM 2's occlusion rule for the returned masks: where the object score logit is not above
        0 the object is absent and every mask of that region becomes ``NO_OBJ_SCORE`` (-1024, no
        pixels), as ``SAM2Base._forward_sam_heads`` does for every frame it decodes (upstream PAM
        decodes still images and frame 0 that way too). Tokens and the image embedding are kept."""
        if not getattr(self.model, "pred_obj_scores", False):
            return masks
        appearing = (object_score_logits > 0).reshape(-1, 1, 1, 1)
        return torch.where(appearing, masks, torch.full_like(masks, NO_OBJ_SCORE))

    def upscale_masks(self, mask_logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Low-res logits (R, 1, h, w) -> logits at the original image size, as SAM 2 does."""
        return F.interpolate(mask_logits.float(), size=tuple(orig_hw), mode="bilinear", align_corners=False)

    # ----- video ------------------------------------------------------------------------------
    @torch.no_grad()
    def iter_track(self, frames: torch.Tensor, prompt: RegionPrompt):
        """Track one region through ``frames`` (T, 3, S, S) with one SAM 2 tracking state, prompted
        on frame 0, yielding per frame ``(index, low-res mask logits (1, 1, 4E, 4E), image
        embedding, mask tokens, score)``: frame 0 through the image path, later frames from the
        memory-conditioned decoder pass (``score`` is SAM 2's predicted IoU on frame 0, else None).
        Frames are yielded as SAM 2 tracks them, so a caller can act before the clip ends.
        """
        t = frames.shape[0]
        first = self.decode(
            self.encode_images(frames[:1]), torch.zeros(1, dtype=torch.long, device=frames.device), [prompt]
        )
        yield 0, first.mask_logits, first.image_embedding, first.mask_tokens, float(first.iou_scores[0, 0])
        if t == 1:
            return
        state = self.model.init_state_from_frames(frames)
        s = float(self.image_size)
        if prompt.mask_input is not None and prompt.point_coords is None and prompt.box is None:
            # track from the given region mask itself (sam2 resizes it to its input size)
            self.model.add_new_mask(state, frame_idx=0, obj_id=1, mask=prompt.mask_input[0] > 0.5)
        else:
            pts = prompt.sparse_points()
            self.model.add_new_points_or_box(
                state, frame_idx=0, obj_id=1, points=pts[0].cpu() / s, labels=pts[1].cpu(), normalize_coords=False
            )
        with _DecoderCapture(self.model.sam_mask_decoder) as cap:
            for frame_idx, _ids, _masks in self.model.propagate_quietly(state):
                if frame_idx == 0:
                    cap.calls.clear()
                    continue
                call = cap.calls[-1]
                cap.calls.clear()
                sel = self._select(call)
                logits = state["output_dict_per_obj"][0]["non_cond_frame_outputs"][frame_idx]["pred_masks"]
                # tensors made under inference mode; clone outside it so autograd can use them
                yield frame_idx, logits.clone(), sel["image_embedding"].clone(), sel["mask_tokens"].clone(), None

    @torch.no_grad()
    def track_video(self, frames: torch.Tensor, prompt: RegionPrompt, keep: list[int]) -> dict:
        """Track one region through ``frames`` (T, 3, S, S), prompted on frame 0 (every frame is
        tracked; see :meth:`iter_track`).

        Returns, for each frame index in ``keep``: the perceiver inputs (frame 0 through the image
        path, later frames from the memory-conditioned decoder pass), and for every frame the
        low-res mask logits SAM 2 tracked.
        """
        t = frames.shape[0]
        if keep[0] != 0 or any(k >= t for k in keep):
            raise ValueError(f"keep must start at frame 0 and stay below {t}, got {keep}")
        out = {"image_embedding": {}, "mask_tokens": {}, "mask_logits": {}, "score": None}
        wanted = set(keep)
        for idx, logits, embedding, tokens, score in self.iter_track(frames, prompt):
            out["mask_logits"][idx] = logits
            if idx == 0:
                out["score"] = score
            if idx in wanted:
                out["image_embedding"][idx] = embedding
                out["mask_tokens"][idx] = tokens
        return out
