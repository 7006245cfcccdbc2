"""The predictor: the one door from a region request to masks and text.

    predictor = PAMPredictor.from_pretrained("checkpoints/pam-export")   # or a released folder
    [r] = predictor.predict(image, [{"box": [x0, y0, x1, y1]}], tasks=["category", "short_caption"])
    r.mask, r.rle, r.score, r.texts, r.fields
    [r] = predictor.predict(image, [{"box": [...]}], question="What is this region used for?")  # r.texts["question"]
    results = predictor.generate(
        [RegionRequest(region={"box": [...]}, image=image, task="category", max_new_tokens=8), ...]
    )
    video = predictor.predict_video("clip.mp4", {"box": [...]}, frame_index=0)
    for event in predictor.stream("clip.mp4", {"box": [...]}): ...

Every front-end (CLI, server, demo, evaluation, streaming, the training report, the benchmark
script) is an adapter over the public methods here. :meth:`generate` is the core: typed
:class:`~pam.inference.request.RegionRequest` s, validated once, one SAM 2 encode per distinct
image, batched decoding with a per-item ``max_new_tokens``. Streaming uses :meth:`track` (SAM 2's
tracking state carried over a clip), :meth:`clip_features` and :meth:`generate_from_features`.

Settings that change what the released weights produce (SAM 2 tracking preset, resize) live in the
model config; decoding and precision here: ``generation`` (:mod:`pam.inference.generation`;
upstream's sampling by default, greedy on request) and ``vision_dtype`` ("auto": bf16 autocast for
SAM 2, perceiver and projectors on a GPU, as upstream runs them, fp32 on a CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..api import load_pam
from ..processing.collator import PAMCollator
from ..processing.prompts import Task, parse_fields
from ..utils.layout import select_frames
from ..utils.masks import mask_to_box
from .generation import GenerationSettings, resolve_generation
from .regions import Region, check_language, check_tasks, load_rgb
from .request import QuestionError, RegionRequest, question_turn
from .results import RegionPrediction, RegionResult, StreamEvent, VideoPrediction
from .video_input import load_video

log = logging.getLogger(__name__)

__all__ = [
    "PAMPredictor",
    "QuestionError",
    "RegionRequest",
    "StreamEvent",
    "TrackedFrame",
    "mask_to_box",
    "question_turn",
    "resolve_vision_dtype",
]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_vision_dtype(vision_dtype: str, device: torch.device) -> torch.dtype:
    """ "auto": bfloat16 on CUDA (upstream runs SAM 2, perceiver and projectors in bf16), else float32."""
    if vision_dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if vision_dtype not in table:
        raise ValueError(f"vision_dtype must be auto, float32 or bfloat16, got {vision_dtype!r}")
    return table[vision_dtype]


@dataclass
class TrackedFrame:
    """One frame of a region tracked by SAM 2: the perceiver's inputs and the low-res mask."""

    index: int  # position in the clip
    mask_logits: torch.Tensor  # (1, 1, h, w) low-res, float
    image_embedding: torch.Tensor  # SAM 2's post-decoder image embedding
    mask_tokens: torch.Tensor
    score: float | None  # SAM 2's IoU on frame 0, else None


class PAMPredictor:
    def __init__(
        self,
        bundle,
        *,
        generation: GenerationSettings | None = None,
        vision_dtype: str = "auto",
        batch_size: int = 8,
        max_tracked_frames: int | None = None,
        progress: bool = False,
        tokenizer_lock=None,
    ):
        """``tokenizer_lock``: held while this predictor tokenizes, for callers that also tokenize
        from other threads (fast tokenizers are not thread-safe)."""
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.processor = bundle.processor
        self.generation = (generation or GenerationSettings()).validate()
        self.vision_dtype = resolve_vision_dtype(vision_dtype, self.model.device)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.max_tracked_frames = max_tracked_frames
        self.progress = progress  # tqdm bars on stderr for batched generation and tracking
        self.collate = PAMCollator(bundle.processor, for_generation=True)
        self.tokenizer_lock = tokenizer_lock if tokenizer_lock is not None else contextlib.nullcontext()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        greedy: bool = False,
        sam2_checkpoint: str | None = None,
        base_config=None,
        generation: dict | None = None,
        **kwargs,
    ) -> PAMPredictor:
        """Load ``path`` (PAM checkpoint, export or released folder, through :func:`pam.api.load_pam`);
        decoding settings from the folder's generation_config.json (when present) under upstream's
        explicit values, then ``generation`` overrides; ``greedy=True`` decodes greedily."""
        bundle = load_pam(
            path, device=str(resolve_device(device)), sam2_checkpoint=sam2_checkpoint, base_config=base_config
        )
        settings = resolve_generation(path, greedy=greedy, **(generation or {}))
        return cls(bundle, generation=settings, **kwargs)

    @property
    def max_new_tokens(self) -> int:
        return self.generation.max_new_tokens

    def autocast(self):
        """bf16 autocast for the visual path when ``vision_dtype`` is bfloat16."""
        if self.vision_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.model.device.type, dtype=self.vision_dtype)

    def seed(self, generation: GenerationSettings | None = None) -> None:
        """Set the torch seed before a sampled generate call (settings with a seed only)."""
        g = generation or self.generation
        if g.do_sample and g.seed is not None:
            torch.manual_seed(g.seed)

    # ----- the core: requests -> results ------------------------------------------------------------
    def check(self, requests: Sequence[RegionRequest], *, strict: bool = True) -> list[RegionRequest]:
        """Every request validated (errors name ``requests[i]`` and the field) before model work."""
        if not requests:
            raise ValueError("give at least one request")
        one = len(requests) == 1
        return [r.checked("request" if one else f"requests[{i}]", strict=strict) for i, r in enumerate(requests)]

    @torch.no_grad()
    def generate(
        self,
        requests: Sequence[RegionRequest],
        *,
        generation: GenerationSettings | None = None,
        strict: bool = True,
        checked: bool = False,
    ) -> list[RegionResult]:
        """Text, mask and score for each request, ``batch_size`` requests per model call: one SAM 2
        encode per distinct image of a call (same ``image_key``, else the same array object), one
        batched decode in which each request stops at its own ``max_new_tokens``.

        ``generation`` replaces the predictor's decoding settings for this call; ``strict=False``
        keeps only the format checks of regions (benchmarks); ``checked=True``: already checked."""
        requests = list(requests) if checked else self.check(requests, strict=strict)
        keys: dict[int, str] = {}
        samples, limits = [], []
        for i, r in enumerate(requests):
            media = r.video if r.is_video else r.image
            key = r.image_key or keys.setdefault(id(media), f"image{len(keys)}")
            samples.append(r.sample(f"request{i}", key))
            limits.append(r.max_new_tokens)
        return self.generate_samples(samples, max_new_tokens=limits, generation=generation)

    @torch.no_grad()
    def generate_samples(
        self,
        samples: list[dict],
        *,
        max_new_tokens: int | Sequence[int | None] | None = None,
        generation: GenerationSettings | None = None,
    ) -> list[RegionResult]:
        """:meth:`generate` for sample dicts in the dataset/collator format (``media_type``,
        ``pixels``, ``prompt``, ``turns`` ending with the user turn): for harnesses that build
        their own turns (evaluation of dataset samples, the training report)."""
        for s in samples:
            if not s.get("turns") or s["turns"][-1]["role"] != "user":
                raise ValueError(f"sample {s.get('id')!r}: turns must end with the user turn to answer")
        g = generation or self.generation
        if max_new_tokens is None or isinstance(max_new_tokens, int):
            max_new_tokens = [max_new_tokens] * len(samples)
        limits = [g.max_new_tokens if n is None else int(n) for n in max_new_tokens]
        out: list[RegionResult] = []
        starts = range(0, len(samples), self.batch_size)
        if self.progress and len(starts) > 1:
            from tqdm import tqdm

            starts = tqdm(starts, desc="generating", unit="batch")
        for i in starts:
            out += self._run_batch(samples[i : i + self.batch_size], limits[i : i + self.batch_size], g)
        return out

    def _run_batch(self, samples: list[dict], limits: list[int], g: GenerationSettings) -> list[RegionResult]:
        with self.tokenizer_lock:
            batch = self.collate(samples)
        self.seed(g)
        with self.autocast():
            out = self.model.generate(
                **batch,
                max_new_tokens=max(limits),
                eos_token_id=self.processor.eos_token_ids,
                pad_token_id=self.processor.tokenizer.pad_token_id,
                generation_kwargs=g.model_kwargs(),
            )
        scores = out.scores.tolist()
        results = []
        for r, ids in enumerate(out.sequences.tolist()):  # one device->host copy of all generated ids
            text, kept, reason = self.processor.decode(ids, limits[r])
            mask = self.processor.postprocess_masks(out.mask_logits[r], batch.meta["orig_sizes"][r]).cpu().numpy()
            is_image = samples[r]["media_type"] != "video"
            results.append(
                RegionResult(
                    text=text, mask=mask[0] if is_image else mask, score=scores[r], token_ids=kept, finish_reason=reason
                )
            )
        return results

    # ----- images ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        image,
        regions,
        tasks=None,
        language: str = "en",
        *,
        question: str | None = None,
        max_new_tokens: int | None = None,
    ) -> list[RegionPrediction]:
        """Mask, score, text per task and parsed fields for each region of one image.

        ``tasks`` (default ``["detailed_caption"]``) or a free ``question`` (not both): a question's
        raw answer is ``texts["question"]`` and ``fields`` stays empty."""
        return self.predict_batch(
            [(image, regions)], tasks=tasks, language=language, question=question, max_new_tokens=max_new_tokens
        )[0]

    @torch.no_grad()
    def predict_batch(
        self, items, tasks=None, language: str = "en", *, question: str | None = None, max_new_tokens: int | None = None
    ) -> list[list[RegionPrediction]]:
        """:meth:`predict` over many ``(image, regions)`` pairs: one request per region and task,
        all validated before the first model call."""
        if question is not None:
            if tasks is not None:
                raise QuestionError(
                    "give tasks or a question, not both "
                    f"(tasks={list(tasks) if not isinstance(tasks, str) else tasks!r})",
                    "question",
                )
            question_turn(question)
            check_language(language)
            asks = [{"question": question}]
        else:
            asks = [{"task": t} for t in check_tasks(["detailed_caption"] if tasks is None else tasks, language)]
        requests, where = [], []
        for j, (image, regions) in enumerate(items):
            name = "image" if len(items) == 1 else f"image {j}"
            rgb = load_rgb(image, name)
            if isinstance(regions, (dict, Region)):
                regions = [regions]
            if not regions:
                raise ValueError(f"{name}: give at least one region")
            prefix = "" if len(items) == 1 else f"{name} "
            for i, r in enumerate(regions):
                region = Region.from_any(r, f"{prefix}region {i}").checked(rgb.shape[:2], f"{prefix}region {i}")
                for ask in asks:
                    requests.append(
                        RegionRequest(
                            region=region,
                            image=rgb,
                            language=language,
                            max_new_tokens=max_new_tokens,
                            image_key=f"image{j}",
                            **ask,
                        )
                    )
                    where.append((j, i))
        results = self.generate(self.check(requests), checked=True)
        grouped: dict[tuple[int, int], list[tuple[RegionRequest, RegionResult]]] = {}
        for key, req, res in zip(where, requests, results):
            grouped.setdefault(key, []).append((req, res))
        out = []
        for j, (_image, regions) in enumerate(items):
            preds = []
            for i in range(1 if isinstance(regions, (dict, Region)) else len(regions)):
                pairs = grouped[(j, i)]
                texts = {req.answer_key: res.text for req, res in pairs}
                fields: dict = {}
                for req, res in pairs:
                    if req.question is None:  # free text: nothing to parse
                        fields.update(
                            {
                                k: v
                                for k, v in parse_fields(req.task, res.text, language).items()
                                if v is not None or k not in fields
                            }
                        )
                first_req, first = pairs[0]
                preds.append(
                    RegionPrediction(
                        mask=first.mask,
                        score=first.score,
                        texts=texts,
                        fields=fields,
                        region=first_req.region.to_json(),
                    )
                )
            out.append(preds)
        return out

    # ----- video ----------------------------------------------------------------------------------
    def _video_frames(self, video, frame_index: int) -> tuple[np.ndarray, list[int]]:
        return load_video(video, max_frames=self.max_tracked_frames, start=frame_index)

    @torch.no_grad()
    def predict_video(
        self,
        video,
        region,
        *,
        frame_index: int = 0,
        language: str = "en",
        history: str | None = None,
        question: str | None = None,
        max_new_tokens: int | None = None,
    ) -> VideoPrediction:
        """Caption one region given on frame ``frame_index`` and tracked by SAM 2 through the rest of
        the clip (all of it, or ``max_tracked_frames`` spread evenly); the LLM then sees frame 0
        and ``video_num_frames - 1`` frames spread over the tracked ones, as upstream.

        ``question``: ask this instead of the caption task (``text`` is the raw answer); it
        excludes ``history``, which belongs to the caption prompt."""
        frames, indices = self._video_frames(video, frame_index)
        request = RegionRequest(
            region=region,
            video=frames,
            language=language,
            history=history,
            question=question,
            max_new_tokens=max_new_tokens,
        )
        [res] = self.generate([request])
        llm = select_frames(len(indices), self.model.config.video_num_frames)
        return VideoPrediction(
            text=res.text, masks=res.mask, frame_indices=indices, llm_frames=[indices[k] for k in llm], score=res.score
        )

    # ----- streaming: SAM 2's tracking state, features, generation from features ---------------------
    @torch.no_grad()
    def track(self, frames: np.ndarray, region: Region | dict, *, strict: bool = True) -> Iterator[TrackedFrame]:
        """Track ``region`` (given on frame 0) through ``frames`` (T, H, W, 3) with ONE SAM 2
        tracking state, yielding each frame as soon as it is tracked."""
        frames = np.asarray(frames)
        hw = tuple(frames.shape[1:3])
        region = Region.from_any(region, "region").checked(hw, "region", strict=strict)
        prompt = self.processor.region_prompt(region.prompt_dict(), hw).to(self.model.device)
        pixels = self.processor.preprocess_video(frames).to(self.model.device, self.model.sam2_dtype)
        with self.autocast():
            for idx, low, embedding, tokens, score in self.model.sam2.iter_track(pixels, prompt):
                yield TrackedFrame(idx, low.float(), embedding, tokens, score)

    @torch.no_grad()
    def clip_features(self, frames: Sequence[TrackedFrame]) -> torch.Tensor:
        """The LLM's visual tokens for a clip made of ``frames`` (the first in the first-frame
        layout, every one followed by the frame newline), as the model lays out a video region."""
        with self.autocast():
            parts = [
                self.model.region_tokens(f.image_embedding, f.mask_tokens, first_frame=(i == 0), last=False)[0]
                for i, f in enumerate(frames)
            ]
        return torch.cat(parts)

    @torch.no_grad()
    def generate_from_features(
        self,
        features: torch.Tensor,
        num_frames: int,
        request: RegionRequest,
        *,
        generation: GenerationSettings | None = None,
    ) -> str:
        """The answer to ``request`` (its task or question; region and media unused) about a
        clip of ``num_frames`` frames whose visual tokens are ``features`` (:meth:`clip_features`)."""
        g = generation or self.generation
        if request.question is None and request.task is None:
            request = dataclasses.replace(request, task=Task.VIDEO_CAPTION.value)
        turns = [{"role": "user", "content": request.user_turn()}]
        ids = self.processor.tokenize(turns, num_frames=num_frames, add_generation_prompt=True)["input_ids"]
        input_ids = torch.tensor([ids], device=self.model.device)
        limit = request.max_new_tokens or g.max_new_tokens
        self.seed(g)
        with self.autocast():
            out = self.model.generate_from_visual(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                visual=[features],
                max_new_tokens=limit,
                eos_token_id=self.processor.eos_token_ids,
                pad_token_id=self.processor.tokenizer.pad_token_id,
                generation_kwargs=g.model_kwargs(),
            )
        return self.processor.decode(out[0].tolist(), limit)[0]

    def masks_from_logits(self, frames: Sequence[TrackedFrame], hw: tuple[int, int]) -> np.ndarray:
        """Bool (T, H, W) masks at the original size from tracked frames' low-res logits."""
        low = torch.cat([f.mask_logits.reshape(1, *f.mask_logits.shape[-2:]) for f in frames])
        return self.processor.postprocess_masks(low, hw).cpu().numpy()

    def stream(
        self,
        video,
        region,
        *,
        frame_index: int = 0,
        language: str = "en",
        boundaries=None,
        progress: bool = False,
        ends: list[int] | None = None,
        strict: bool = True,
    ) -> Iterator[StreamEvent]:
        """Yield :class:`StreamEvent` s for one region tracked with a single SAM 2 state over the
        whole video; events are cut by :class:`~pam.inference.events.BoundaryRule` (automatic
        motion change points by default, or fixed windows), or end at the given ``ends``
        (positions in the clip), and each caption is conditioned on the previous one."""
        from .events import BoundaryRule
        from .streaming import stream_events

        if isinstance(boundaries, str):
            boundaries = BoundaryRule(mode=boundaries)
        check_tasks([Task.VIDEO_CAPTION.value], language, allowed=(Task.VIDEO_CAPTION.value,))
        frames, indices = self._video_frames(video, frame_index)
        r = Region.from_any(region, "region").checked(frames.shape[1:3], "region", strict=strict)
        yield from stream_events(
            self,
            frames,
            indices,
            r,
            language=language,
            rule=boundaries,
            progress=progress or self.progress,
            ends=ends,
            strict=strict,
        )
