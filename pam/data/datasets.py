"""Region datasets: records in, plain sample dicts out (decoded pixels, a prompt, chat turns).

Each sample is a dict::

    {"id": "rec/r0/category/en", "media_type": "image" | "video", "image_key": str,
     "pixels": uint8 (H, W, 3) or (T, H, W, 3), "frame_indices": list[int] | None,
     "prompt": {"points": float32 (P, 2) | None, "point_labels": int64 (P,) | None,
                "box": float32 (4,) xyxy | None, "mask": bool (H, W) | None},
     "gt_mask": bool (H, W) | None, "turns": [{"role", "content"}, ...],
     "task": str, "language": "en" | "zh", "meta": dict, "skipped": [(sample_id, reason), ...]}

Prompts and masks refer to the image or to the first video frame of the clip, in original pixels.
A video clip spans the whole video, or one event for ``video_caption``; it starts at the region's
first annotated frame in that span (the prompt frame) and holds the frames SAM 2 will track:
every frame to the end of the span, or ``track_frames`` of them spread evenly
(:func:`pam.utils.layout.spread_frames`, the prompt frame first). The model tracks them all and
gives the LLM ``select_frames(len(frame_indices), model.video_num_frames)`` of them, as inference
does. ``frame_indices`` are the clip's frames in the video's numbering. ``track_frames`` is 0 (every
frame) or at least ``model.video_num_frames``; its default, 32, tracks every frame of the released
``*_sampled_32f_*`` video files, as upstream does, and of the quick-start's 16-32-frame clips, while
bounding the cost of long raw videos.
Decoding is lazy (in ``__getitem__``). A bad sample is skipped: the next index is tried, the skip is
logged on the ``pam.data`` logger and listed in the returned sample's ``skipped``. Randomness (the
prompt, and the task in ``task_mode="random"``) is seeded from ``(seed, epoch, index)``; call
``set_epoch`` before each epoch's DataLoader iterator is created.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pam.data.prompt_sampling import PromptSamplingConfig, frame_annotation, make_rng, sample_prompt
from pam.data.readers import read_jsonl, read_upstream_jsonl
from pam.data.schema import LANGUAGES, TEXT_FIELDS, Record
from pam.data.skips import CORRUPT_VIDEO, NO_PROMPT, BadSample, NoGoodSample
from pam.data.turns import TASKS, TaskChoice, available_choices, build_turns
from pam.data.video import BACKENDS, count_video_frames, read_frame_files, read_image, read_video
from pam.utils.config import ConfigError, build_config, check
from pam.utils.layout import TokenLayout, spread_frames

logger = logging.getLogger("pam.data")

TASK_MODES = ("all", "random")
FORMATS = ("pam", "upstream")  # other formats: convert first with `python -m data_pipeline convert SOURCE ...`


@dataclass
class RegionDatasetConfig:
    tasks: tuple[str, ...] = TASKS  # tasks to emit (Task values, plus "conversation" for given turns)
    languages: tuple[str, ...] = ("en",)  # languages to emit
    # "all": a sample per (region, task, language[, event]); "random": one per region, task drawn per visit
    task_mode: str = "all"
    prompt: PromptSamplingConfig = field(default_factory=PromptSamplingConfig)  # point / box / mask prompt draws
    # frames of a video clip SAM 2 tracks from the prompt frame on: 0 = every frame; N = N spread evenly (first and
    # last kept); see the module docstring
    track_frames: int = 32
    video_backend: str = "auto"  # "auto" (decord, PyAV fallback), "decord" or "pyav"
    seed: int = 0  # base seed of every random draw
    max_tries: int = 20  # consecutive bad samples tolerated before raising NoGoodSample

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.languages = tuple(self.languages)
        self.prompt = PromptSamplingConfig.from_any(self.prompt)
        bad = [t for t in self.tasks if t not in TASKS]
        check(
            not bad and bool(self.tasks),
            "data.tasks",
            f"has unknown task(s) {bad}; expected a non-empty subset of {TASKS}",
        )
        bad = [lang for lang in self.languages if lang not in LANGUAGES]
        check(
            not bad and bool(self.languages),
            "data.languages",
            f"has unknown language(s) {bad}; expected a subset of {LANGUAGES}",
        )
        check(self.task_mode in TASK_MODES, "data.task_mode", f"must be one of {TASK_MODES}, got {self.task_mode!r}")
        check(
            self.track_frames >= 0,
            "data.track_frames",
            f"must be 0 (every frame) or a number of frames >= model.video_num_frames, got {self.track_frames}",
        )
        check(
            self.video_backend in BACKENDS,
            "data.video_backend",
            f"must be one of {BACKENDS}, got {self.video_backend!r}",
        )
        check(self.max_tries >= 1, "data.max_tries", f"must be >= 1, got {self.max_tries}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RegionDatasetConfig:
        if "video_num_frames" in kwargs:
            raise ConfigError(
                "config field `data.video_num_frames` was replaced by `data.track_frames` (the frames SAM 2 tracks "
                "per clip; the frames the LLM sees are model.video_num_frames, selected among the tracked ones)"
            )
        return build_config(cls, dict(kwargs), "data.")

    def check_llm_frames(self, video_num_frames: int) -> None:
        """``track_frames`` against the model's ``video_num_frames`` (called when the model's layout is set)."""
        check(
            self.track_frames == 0 or self.track_frames >= video_num_frames,
            "data.track_frames",
            f"is {self.track_frames}, fewer than the {video_num_frames} frames the LLM sees (model.video_num_frames); "
            "use 0 (every frame) or a value >= model.video_num_frames",
        )


@dataclass(frozen=True)
class _Unit:
    record: int  # index into records
    region: int  # index into record.regions
    choices: tuple[TaskChoice, ...]  # one in task_mode "all"; all of the region's in "random"


def media_key(path: str) -> str:
    """A media file's ``image_key`` part: its canonical path (symlinks and ``..`` resolved), so the
    same file reached through another spelling of the data root keeps its key (feature cache,
    encode sharing in the collator). One ``realpath`` per sample: no extra file reads."""
    return os.path.realpath(path)


def approx_text_tokens(text: str) -> int:
    """A cheap token estimate: about 4 characters per token, one per CJK character."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return cjk + math.ceil((len(text) - cjk) / 4)


class RegionDataset(Dataset):
    """Samples for every region of ``records`` (see the module docstring for the sample dict)."""

    def __init__(self, records: Sequence[Record], config: RegionDatasetConfig | None = None, *, name: str = "regions"):
        self.records = list(records)
        self.config = config or RegionDatasetConfig()
        self.name = name
        self.epoch = 0
        self._lengths: list[int] | None = None
        self.token_layout: TokenLayout | None = None  # the model's; set_token_layout before approx_lengths
        self._frame_counts: dict[str, int] = {}  # video path -> number of frames, filled lazily
        self.units: list[_Unit] = []
        for r, record in enumerate(self.records):
            video = record.media_type == "video"
            for g, region in enumerate(record.regions):
                choices = available_choices(region, video, self.config.tasks, self.config.languages)
                if not choices:
                    continue
                if self.config.task_mode == "all":
                    self.units.extend(_Unit(r, g, (c,)) for c in choices)
                else:
                    self.units.append(_Unit(r, g, tuple(choices)))
        if not self.units:
            logger.warning(
                "dataset %s: no region has texts for tasks %s in %s", name, self.config.tasks, self.config.languages
            )

    def __len__(self) -> int:
        return len(self.units)

    def __repr__(self) -> str:
        return (
            f"RegionDataset(name={self.name!r}, records={len(self.records)}, samples={len(self)}, "
            f"task_mode={self.config.task_mode!r})"
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample_id(self, index: int, choice: TaskChoice | None = None) -> str:
        """``record/r{region}/{task}[/e{event}]/{language}``; just ``record/r{region}`` for an undrawn random task."""
        unit = self.units[index]
        base = f"{self.records[unit.record].id}/r{unit.region}"
        if choice is None:
            if len(unit.choices) > 1:
                return base
            choice = unit.choices[0]
        event = f"/e{choice.event}" if choice.event is not None else ""
        return f"{base}/{choice.task}{event}/{choice.language}"

    def set_token_layout(self, layout: TokenLayout) -> None:
        """The model's visual-token layout (``PAMConfig.token_layout()``), used by ``approx_lengths``;
        ``data.track_frames`` is checked against its ``video_num_frames`` here (ConfigError)."""
        self.config.check_llm_frames(layout.video_num_frames)
        self.token_layout = layout
        self._lengths = None

    def approx_lengths(self) -> list[int]:
        """Approximate LLM tokens per sample (visual tokens + text), computed without decoding.

        Visual tokens come from :meth:`set_token_layout`; without a layout they count as zero.
        """
        if self._lengths is None:
            self._lengths = self._compute_lengths()
        return list(self._lengths)

    def _compute_lengths(self) -> list[int]:
        out = []
        for unit in self.units:
            record = self.records[unit.record]
            region = record.regions[unit.region]
            layout = self.token_layout
            if layout is None:
                visual = 0
            elif record.media_type == "image":
                visual = layout.image_region_tokens()
            else:
                # the LLM sees at most layout.video_num_frames of the tracked frames
                t = len(record.frames) if record.frames else layout.video_num_frames
                visual = layout.video_region_tokens(t)
            text = sum(
                sum(approx_text_tokens(turn["content"]) for turn in build_turns(region, c)) for c in unit.choices
            )
            out.append(visual + round(text / len(unit.choices)))
        return out

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        skipped: list[tuple[str, str]] = []
        for attempt in range(self.config.max_tries):
            i = (index + attempt) % n
            try:
                sample = self._build(i)
            except BadSample as exc:
                sid = self.sample_id(i)
                logger.warning(
                    "dataset %s: skipping %s (record %s): %s",
                    self.name,
                    sid,
                    self.records[self.units[i].record].id,
                    exc,
                )
                skipped.append((sid, exc.reason))
                continue
            sample["skipped"] = skipped
            return sample
        reasons = ", ".join(f"{sid}: {reason}" for sid, reason in skipped[-5:])
        raise NoGoodSample(
            f"dataset {self.name}: no good sample in {self.config.max_tries} consecutive indices from {index} "
            f"(last skips: {reasons}); the data is broken or max_tries is too small"
        )

    def _build(self, index: int) -> dict:
        cfg = self.config
        unit = self.units[index]
        record = self.records[unit.record]
        region = record.regions[unit.region]
        rng = make_rng(cfg.seed, self.epoch, index)
        choice = unit.choices[0] if len(unit.choices) == 1 else unit.choices[int(rng.integers(len(unit.choices)))]
        video = record.media_type == "video"
        if video:
            pixels, frame_indices, key = self._load_clip(record, region, choice)
            prompt_frame = frame_indices[0]
        else:
            assert record.image is not None
            pixels, frame_indices, key, prompt_frame = read_image(record.image), None, media_key(record.image), 0
        height, width = pixels.shape[-3], pixels.shape[-2]
        ann = frame_annotation(region, prompt_frame, height, width)
        kind, prompt = sample_prompt(rng, ann, height, width, video=video, config=cfg.prompt)
        turns = build_turns(region, choice)
        texts = {t: dict(getattr(region, t)) for t in TEXT_FIELDS if getattr(region, t) is not None}
        meta = {
            "dataset": self.name,
            "record_id": record.id,
            "region_index": unit.region,
            "source": record.source,
            "category": region.text("category", choice.language) if region.category else None,
            "texts": texts,
            "answer": turns[-1]["content"],
            "prompt_type": kind,
            "prompt_frame": prompt_frame,
            "event_index": choice.event,
            "image_size": (height, width),
            "region_extra": dict(region.extra),
        }
        return {
            "id": self.sample_id(index, choice),
            "media_type": record.media_type,
            "image_key": key,
            "pixels": pixels,
            "frame_indices": frame_indices,
            "prompt": prompt,
            "gt_mask": ann.mask,
            "turns": turns,
            "task": choice.task,
            "language": choice.language,
            "meta": meta,
        }

    def _load_clip(self, record: Record, region, choice: TaskChoice) -> tuple[np.ndarray, list[int], str]:
        if record.frames is not None:
            total = len(record.frames)
        else:
            assert record.video is not None
            if record.video not in self._frame_counts:
                self._frame_counts[record.video] = count_video_frames(record.video, self.config.video_backend)
            total = self._frame_counts[record.video]
        start, end = 0, total - 1
        if choice.event is not None:
            event = region.events[choice.event]
            start, end = event.start_frame, min(event.end_frame, total - 1)
        annotated = [f for f in region.annotated_frames() if start <= f <= end]
        if not annotated:
            if start > total - 1 or any(f >= total for f in region.annotated_frames()):
                raise BadSample(CORRUPT_VIDEO, f"the video has {total} frames; annotations or events lie beyond")
            raise BadSample(NO_PROMPT, f"no annotated frame in frames {start}..{end}")
        first = annotated[0]
        indices = spread_frames(first, end, self.config.track_frames)
        if record.frames is not None:
            pixels = read_frame_files(record.frames, indices)
            chosen = [record.frames[i] for i in indices]
            common = os.path.commonpath(chosen) if len(chosen) > 1 else os.path.dirname(chosen[0])
            key = media_key(common) + "#" + ",".join(os.path.relpath(p, common) for p in chosen)
        else:
            pixels = read_video(record.video, indices, self.config.video_backend)
            key = f"{media_key(record.video)}#{','.join(map(str, indices))}"
        return pixels, indices, key


def select_subset(records: list[Record], spec: str | int | None, seed: int = 0) -> list[Record]:
    """Upstream's per-file sampling: ``all``, ``first:N``, ``end:N``, ``random:N`` (N an int or ``P%``)."""
    if spec is None or spec == "all":
        return records
    text = str(spec)
    how, _, amount = text.partition(":")
    if how not in ("first", "end", "random") or not amount:
        raise ValueError(f"subset must be 'all', 'first:N', 'end:N' or 'random:N' (N may be 'P%'), got {spec!r}")
    n = math.ceil(float(amount[:-1]) * len(records) / 100) if amount.endswith("%") else int(amount)
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {spec!r}")
    if how == "first":
        return records[:n]
    if how == "end":
        return records[len(records) - n :] if n else []
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(records))[:n]
    return [records[i] for i in sorted(order)]


def load_records(
    path: str,
    root: str | None = None,
    format: str = "pam",
    *,
    on_error: str = "raise",
    language: str | None = None,
    source: str | None = None,
    path_prefix_map: dict[str, str] | None = None,
) -> list[Record]:
    """Read an annotation file in one of :data:`FORMATS`."""
    if format not in FORMATS:
        hint = (
            f"; convert it first: python -m data_pipeline convert {format} --annotations {path} --out OUT.jsonl"
            if format in ("coco", "lvis", "paco")
            else ""
        )
        raise ConfigError(f"config field `data.format` must be one of {FORMATS}, got {format!r}{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if format == "pam":
        return read_jsonl(path, root, on_error=on_error)
    if format == "upstream":
        prefix_map = dict(path_prefix_map) if path_prefix_map else None
    return read_upstream_jsonl(
        path, root, language=language, on_error=on_error, source=source, path_prefix_map=prefix_map
    )


def load_region_dataset(
    path: str,
    root: str | None = None,
    format: str = "pam",
    *,
    name: str | None = None,
    subset: str | None = None,
    on_error: str = "raise",
    language: str | None = None,
    path_prefix_map: dict[str, str] | None = None,
    **options: Any,
) -> RegionDataset:
    """Build a :class:`RegionDataset` from an annotation file (the Hydra ``_target_`` for datasets).

    ``root``: folder that relative media paths resolve against (default: the file's folder).
    ``format``: one of :data:`FORMATS`. ``subset``: upstream-style selection (see select_subset).
    ``on_error``: "raise" on an invalid line, or "skip" it with a warning. ``language``: label of
    an upstream file. ``path_prefix_map``: rewrites absolute media prefixes of an upstream file.
    ``options``: fields of :class:`RegionDatasetConfig`.
    """
    config = RegionDatasetConfig.from_kwargs(**options)
    name = name or os.path.splitext(os.path.basename(path))[0]
    source = name if format == "upstream" else None
    records = load_records(
        path, root, format, on_error=on_error, language=language, source=source, path_prefix_map=path_prefix_map
    )
    records = select_subset(records, subset, config.seed)
    return RegionDataset(records, config, name=name)
