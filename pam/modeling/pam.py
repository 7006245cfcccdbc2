"""PAM: frozen SAM 2 -> Semantic Perceiver -> projectors -> causal LM.

A batch holds R regions, one LLM sequence each. Image regions point into a set of distinct images
(``region_image_index``), each encoded by SAM 2 once however many regions it has; video regions
carry their own frames. Every sequence contains exactly as many image-placeholder tokens as its
region has visual tokens (the collator expands the placeholder); ``forward`` checks this and
scatters the visual features into those positions.

SAM 2 is held outside the module tree (``self.sam2`` is not a registered submodule): it never
appears in ``parameters()`` or ``state_dict()``, so optimisers, DDP and DeepSpeed ZeRO-3 see only
what can train, and training checkpoints never carry it. ``_apply`` still moves and casts it with
the rest (``.to()``, ``.cuda()``, ``.bfloat16()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.layout import IGNORE_INDEX, select_frames
from .config import PAMConfig
from .llm import build_llm
from .perceiver import SemanticPerceiver
from .projector import Projector
from .sam2_encoder import FrozenSAM2
from .sam2_types import ImageFeatures, RegionPrompt


@dataclass
class PAMOutput:
    """What ``forward`` returns: plain tensors, nothing read back to the host.

    ``loss_sum`` is the cross-entropy summed over the label tokens and ``num_tokens`` their count
    (a 0-d tensor): the trainer divides by the count over all ranks and micro-batches.
    """

    loss_sum: torch.Tensor | None
    num_tokens: torch.Tensor | None
    logits: torch.Tensor  # (R, L, V)


@dataclass
class GenerationOutput:
    """What ``generate`` returns, per region, as tensors: decoding the text and upsampling the masks
    belong to the processor (:meth:`PAMProcessor.decode`, :meth:`PAMProcessor.postprocess_masks`)."""

    sequences: torch.Tensor  # (R, N) generated token ids (rows that stopped early are padded)
    mask_logits: list[torch.Tensor]  # per region: (1, h, w) image, or (T, h, w) video, low-res
    scores: torch.Tensor  # (R,) SAM 2's predicted IoU of the (first-frame) mask


@dataclass
class VisualOutputs:
    embeddings: list[torch.Tensor]  # per region: (N_r, hidden) in the LLM's dtype
    mask_logits: list[torch.Tensor]  # per region: (1, h, w) image, or (T, h, w) video, low-res
    score_parts: list[float | torch.Tensor]  # per region: a 0-d tensor (image) or a float (video)

    @property
    def scores(self) -> list[float]:
        """SAM 2's IoU score per region, read from the device on first use only (training never
        reads it, so its forward pass makes no device->host copy for them)."""
        tensors = [s for s in self.score_parts if isinstance(s, torch.Tensor)]
        values = iter(torch.stack(tensors).tolist() if tensors else [])
        return [next(values) if isinstance(s, torch.Tensor) else float(s) for s in self.score_parts]


class PAM(nn.Module):
    def __init__(
        self, *, config: PAMConfig, sam2: FrozenSAM2, perceiver: SemanticPerceiver, llm: nn.Module, image_token_id: int
    ):
        super().__init__()
        self.config = config
        object.__setattr__(self, "sam2", sam2)  # deliberately not a submodule; see module docstring
        self.perceiver = perceiver
        self.llm = llm
        self.image_token_id = image_token_id
        hidden = llm.config.get_text_config().hidden_size
        self.image_projector = Projector(in_dim=perceiver.cfg.image_token_dim, out_dim=hidden)
        self.semantic_projector = Projector(in_dim=perceiver.cfg.embed_dim, out_dim=hidden)
        std = 1.0 / math.sqrt(hidden)
        self.image_newline = nn.Parameter(torch.randn(hidden) * std)
        self.semT_newline = nn.Parameter(torch.randn(hidden) * std)
        self.frame_newline = nn.Parameter(torch.randn(hidden) * std)
        if config.compile:
            self.compile_hot_path()

    @classmethod
    def from_config(cls, config: PAMConfig, *, image_token_id: int, sam2: FrozenSAM2 | None = None) -> PAM:
        """A model with fresh perceiver and projectors. ``sam2`` defaults to a randomly initialised
        one; a config naming a SAM 2 checkpoint must be built by :func:`pam.api.build_pam`."""
        config.validate()
        if sam2 is None:
            if config.sam2.checkpoint is not None:
                raise ValueError(
                    f"config.sam2.checkpoint is {config.sam2.checkpoint!r}: "
                    "build with pam.api.build_pam, which loads it"
                )
            sam2 = FrozenSAM2.from_config(config.sam2, num_mask_tokens=config.perceiver.num_mask_tokens)
        if sam2.num_mask_tokens != config.perceiver.num_mask_tokens:
            raise ValueError(
                f"SAM 2 hands {sam2.num_mask_tokens} mask tokens "
                f"but config.perceiver.num_mask_tokens is {config.perceiver.num_mask_tokens}"
            )
        return cls(
            config=config,
            sam2=sam2,
            perceiver=SemanticPerceiver(cfg=config.perceiver),
            llm=build_llm(config.llm),
            image_token_id=image_token_id,
        )

    def compile_hot_path(self, **compile_kwargs) -> None:
        """``torch.compile`` in place SAM 2's image encoder, the perceiver and the projectors
        (``config.compile``). Parameter names and ``state_dict`` keys do not change; compilation
        happens on the first call. The LLM is left to Hugging Face (``generation_config``'s
        ``cache_implementation="static"`` compiles its decode step)."""
        for module in (self.sam2.model.image_encoder, self.perceiver, self.image_projector, self.semantic_projector):
            module.compile(**compile_kwargs)

    # ----- module plumbing ----------------------------------------------------------------------
    def _apply(self, fn, *args, **kwargs):
        self.sam2._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> PAM:
        super().train(mode)
        self.sam2.train(False)
        return self

    @property
    def device(self) -> torch.device:
        return self.image_newline.device

    @property
    def llm_dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    # ----- visual path ---------------------------------------------------------------------------
    def region_tokens(self, image_embedding, mask_tokens, first_frame: bool, last: bool) -> torch.Tensor:
        """[image tokens, image_newline, semantic tokens, semT_newline(, frame_newline)] per region,
        from SAM 2's post-decoder image embedding and mask tokens (the perceiver's inputs)."""
        semantic, image_tokens = self.perceiver(image_embedding, mask_tokens, first_frame=first_frame)
        b = semantic.shape[0]
        parts = []
        if self.config.perceiver.use_image_tokens:
            parts.append(self.image_projector(image_tokens.to(self.image_projector[0].weight.dtype)))
        parts.append(self.image_newline.expand(b, 1, -1))
        if semantic.shape[1]:
            parts.append(self.semantic_projector(semantic.to(self.semantic_projector[0].weight.dtype)))
        parts.append(self.semT_newline.expand(b, 1, -1))
        if not last:
            parts.append(self.frame_newline.expand(b, 1, -1))
        return torch.cat([p.to(parts[0].dtype) for p in parts], dim=1)

    _region_tokens = region_tokens  # the name training's tracking tests use

    def encode_regions(
        self,
        *,
        prompts: list[RegionPrompt],
        region_image_index: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_features: ImageFeatures | None = None,
        videos: list[torch.Tensor | None] | None = None,
    ) -> VisualOutputs:
        """Visual embeddings for each region, in region order.

        Image regions (``region_image_index >= 0``) share the encodes of ``pixel_values`` (or
        precomputed ``image_features``, e.g. from the feature cache); video regions (index -1)
        take their frames from ``videos[r]``.
        """
        r_total = len(prompts)
        embeddings: list[torch.Tensor | None] = [None] * r_total
        masks: list[torch.Tensor | None] = [None] * r_total
        scores: list[float | torch.Tensor] = [0.0] * r_total
        # one host read of the (usually CPU) index; no per-region device syncs below
        index_list = region_image_index.tolist()
        image_rows = [r for r, i in enumerate(index_list) if i >= 0]
        if image_rows:
            if image_features is None:
                if pixel_values is None:
                    raise ValueError("image regions need pixel_values or image_features")
                image_features = self.sam2.encode_images(pixel_values.to(self.device, self.sam2_dtype))
            index = torch.as_tensor(
                [index_list[r] for r in image_rows], dtype=torch.long, device=image_features.image_embed.device
            )
            dec = self.sam2.decode(image_features, index, [prompts[r].to(self.device) for r in image_rows])
            tokens = self.region_tokens(dec.image_embedding, dec.mask_tokens, first_frame=True, last=True)
            for i, r in enumerate(image_rows):
                embeddings[r] = tokens[i]
                masks[r] = dec.mask_logits[i]
                scores[r] = dec.iou_scores[i, 0]  # stays on the device; see VisualOutputs.scores
        for r in range(r_total):
            if index_list[r] >= 0:
                continue
            if videos is None or videos[r] is None:
                raise ValueError(f"region {r} is a video region (image index -1) but has no frames")
            embeddings[r], masks[r], scores[r] = self._encode_video(videos[r], prompts[r])
        dtype = self.llm_dtype
        return VisualOutputs([e.to(dtype) for e in embeddings], masks, scores)

    @property
    def sam2_dtype(self) -> torch.dtype:
        return self.sam2.model.no_mem_embed.dtype

    def _encode_video(self, frames: torch.Tensor, prompt: RegionPrompt):
        """Track the region through every given frame with one SAM 2 state (prompted on frame 0);
        the perceiver and the LLM get ``select_frames(T, config.video_num_frames)`` of them, the
        selection inference and streaming use. Returns (visual tokens, all T mask logits, score)."""
        frames = frames.to(self.device, self.sam2_dtype)
        keep = select_frames(frames.shape[0], self.config.video_num_frames)
        track = self.sam2.track_video(frames, prompt.to(self.device), keep)
        per_frame = [
            self.region_tokens(track["image_embedding"][f], track["mask_tokens"][f], first_frame=(i == 0), last=False)[
                0
            ]
            for i, f in enumerate(keep)
        ]
        mask_logits = torch.cat(
            [
                track["mask_logits"][t][:, 0] if track["mask_logits"][t].ndim == 4 else track["mask_logits"][t]
                for t in sorted(track["mask_logits"])
            ]
        )
        return torch.cat(per_frame), mask_logits, track["score"]

    # ----- LLM inputs ----------------------------------------------------------------------------
    def build_inputs_embeds(self, input_ids: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        """Token embeddings with each row's image placeholders replaced by its visual embeddings."""
        is_visual = input_ids == self.image_token_id
        counts = is_visual.sum(dim=1).tolist()
        for r, (n, v) in enumerate(zip(counts, visual)):
            if n != v.shape[0]:
                raise ValueError(
                    f"region {r}: the sequence has {n} image placeholder tokens but the region has "
                    f"{v.shape[0]} visual tokens; the collator must expand the placeholder to "
                    f"config.num_visual_tokens(...) tokens"
                )
        ids = input_ids.masked_fill(is_visual, 0)
        embeds = self.llm.get_input_embeddings()(ids)
        flat = torch.cat(visual).to(embeds.dtype) if visual else embeds.new_zeros(0, embeds.shape[-1])
        return embeds.masked_scatter(is_visual.unsqueeze(-1), flat)

    def forward(
        self,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompts: list[RegionPrompt],
        region_image_index: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_features: ImageFeatures | None = None,
        videos: list[torch.Tensor | None] | None = None,
    ) -> PAMOutput:
        """LM loss on the label tokens (the assistant replies): their summed loss and their count,
        both tensors (no device->host sync); the caller divides by the global count."""
        visual = self.encode_regions(
            prompts=prompts,
            region_image_index=region_image_index,
            pixel_values=pixel_values,
            image_features=image_features,
            videos=videos,
        )
        input_ids = input_ids.to(self.device)
        embeds = self.build_inputs_embeds(input_ids, visual.embeddings)
        out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask.to(self.device), use_cache=False)
        logits = out.logits
        if labels is None:
            return PAMOutput(None, None, logits)
        labels = labels.to(self.device)
        shift_logits = logits[:, :-1].float()
        shift_labels = labels[:, 1:]
        n = (shift_labels != IGNORE_INDEX).sum()
        loss = F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return PAMOutput(loss, n, logits)

    # ----- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompts: list[RegionPrompt],
        region_image_index: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_features: ImageFeatures | None = None,
        videos: list[torch.Tensor | None] | None = None,
        max_new_tokens: int = 128,
        eos_token_id: list[int] | None = None,
        pad_token_id: int | None = None,
        generation_kwargs: dict | None = None,
    ) -> GenerationOutput:
        """Token ids, low-resolution mask logits and SAM 2 scores for each region.

        ``input_ids`` end with the assistant header (right-padded rows are re-padded on the left
        for batched decoding). ``generation_kwargs`` go to Hugging Face ``generate`` (greedy by
        default). Pass a generation batch's ``model_inputs``; an unknown keyword raises TypeError.
        """
        visual = self.encode_regions(
            prompts=prompts,
            region_image_index=region_image_index,
            pixel_values=pixel_values,
            image_features=image_features,
            videos=videos,
        )
        sequences = self.generate_from_visual(
            input_ids=input_ids,
            attention_mask=attention_mask,
            visual=visual.embeddings,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            generation_kwargs=generation_kwargs,
        )
        scores = torch.stack(
            [
                p.float().reshape(()) if isinstance(p, torch.Tensor) else torch.tensor(float(p), device=self.device)
                for p in visual.score_parts
            ]
        )
        return GenerationOutput(sequences=sequences, mask_logits=visual.mask_logits, scores=scores)

    @torch.no_grad()
    def generate_from_visual(
        self,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual: list[torch.Tensor],
        max_new_tokens: int = 128,
        eos_token_id: list[int] | None = None,
        pad_token_id: int | None = None,
        generation_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """The LLM's new token ids (R, N) for sequences whose image placeholders take ``visual``
        (per region, e.g. :meth:`region_tokens` of frames tracked elsewhere)."""
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device).bool()
        embeds = self.build_inputs_embeds(input_ids, [v.to(self.llm_dtype) for v in visual])
        left, left_mask = left_pad(embeds, attention_mask)
        generate_kwargs = {"do_sample": False, **(generation_kwargs or {})}
        return self.llm.generate(
            inputs_embeds=left,
            attention_mask=left_mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **generate_kwargs,
        )


def left_pad(embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's attended positions to the right end (left padding), keeping their order.

    ``embeds`` (R, L, D) and a bool ``attention_mask`` (R, L) -> (R, W, D) and a long mask (R, W),
    W = the longest row. One gather, no per-row loop; the only host read is W.
    """
    lengths = attention_mask.sum(dim=1)
    width = int(lengths.max()) if attention_mask.numel() else 0
    rows, cols = attention_mask.nonzero(as_tuple=True)
    rank = attention_mask.long().cumsum(dim=1)[rows, cols] - 1  # position among the row's kept tokens
    target = width - lengths[rows] + rank
    left = embeds.new_zeros(embeds.shape[0], width, embeds.shape[-1])
    left[rows, target] = embeds[rows, cols]
    left_mask = torch.zeros(embeds.shape[0], width, dtype=torch.long, device=embeds.device)
    left_mask[rows, target] = 1
    return left, left_mask
