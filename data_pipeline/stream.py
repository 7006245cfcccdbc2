"""Streaming-caption data: cut a region's masklet into events, then caption each event with the
previous event's caption as context, and write records whose regions carry ``events`` (the
``video_caption`` task of the training data layer).

Events come from given intervals, or from the masklet: the region's centroid speed between
annotated frames (in units of the region's size per frame) is classed as moving or still, and each
change of class starts an event; with ``shot_threshold`` a large change of the frame's grey-level
histogram (a shot cut) starts one too. Events shorter than ``min_event_frames`` merge into their
neighbour.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pam.clients import ChatBackend, ChatError, image_part, text_part
from pam.data.schema import Event, Record, RegionAnnotation
from pam.data.skips import BadSample

from .backend import parse_json_object
from .manifest import Manifest
from .media import ResumableOutput, count_frames, read_frames
from .prompts import Prompt, load_prompt
from .records import iter_records
from .refine import keyframes_of, source_label
from .som import mark_of, render

logger = logging.getLogger("data_pipeline")


@dataclass
class StreamConfig:
    motion_threshold: float = 0.05  # centroid speed (region sizes per frame) above which the region is "moving"
    shot_threshold: float | None = None  # histogram L1 distance (0..2) that marks a shot cut; None: no shot detection
    min_event_frames: int = 2  # shorter events merge into a neighbour
    max_events: int = 8  # at most this many events per region (shortest merged first)
    intervals: tuple[tuple[int, int], ...] | None = None  # given events (inclusive frame spans) instead of detection
    keyframes: int = 3  # keyframes shown per event
    max_side: int = 768
    max_workers: int = 4  # regions captioned concurrently (events of one region go in order)
    max_tokens: int = 256
    temperature: float = 0.0
    prompt_version: int | None = None
    root: str | None = None  # folder relative media paths resolve against (default: the input file's folder)

    def __post_init__(self) -> None:
        if self.min_event_frames < 1 or self.max_events < 1 or self.keyframes < 1 or self.max_workers < 1:
            raise ValueError("stream fields `min_event_frames`, `max_events`, `keyframes`, `max_workers` must be >= 1")
        if self.motion_threshold <= 0:
            raise ValueError(f"stream field `motion_threshold` must be > 0, got {self.motion_threshold}")
        if self.intervals is not None:
            self.intervals = tuple((int(s), int(e)) for s, e in self.intervals)
            prev = -1
            for s, e in self.intervals:
                if not (prev < s <= e):
                    raise ValueError(
                        "stream field `intervals` must be increasing, non-overlapping spans start <= end, "
                        f"got {list(self.intervals)}"
                    )
                prev = e

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_intervals(text: str) -> tuple[tuple[int, int], ...]:
    """``"0-11,12-23"`` -> ((0, 11), (12, 23))."""
    out = []
    for part in text.split(","):
        s, sep, e = part.strip().partition("-")
        if not sep or not s.isdigit() or not e.isdigit():
            raise ValueError(f"intervals must look like '0-11,12-23', got {text!r}")
        out.append((int(s), int(e)))
    return tuple(out)


def _geometry(
    region: RegionAnnotation, frame: int, height: int | None, width: int | None
) -> tuple[np.ndarray, float] | None:
    """(centroid xy, size = sqrt(area)) of the region on ``frame``."""
    if frame in region.masks and (region.masks[frame].rle is not None or height):
        mask = (
            region.masks[frame].decode(height, width)
            if region.masks[frame].rle is None
            else region.masks[frame].decode()
        )
        ys, xs = np.nonzero(mask)
        if len(xs):
            return np.array([xs.mean(), ys.mean()]), float(np.sqrt(len(xs)))
    if frame in region.boxes:
        x, y, w, h = region.boxes[frame]
        if w > 0 and h > 0:
            return np.array([x + w / 2, y + h / 2]), float(np.sqrt(w * h))
    return None


def motion_states(
    region: RegionAnnotation, height: int | None = None, width: int | None = None, threshold: float = 0.05
) -> list[tuple[int, bool]]:
    """(frame, moving) for each annotated frame but the last: is the region moving from it to the next?"""
    frames = [f for f in region.annotated_frames() if _geometry(region, f, height, width) is not None]
    out = []
    for a, b in zip(frames, frames[1:]):
        (ca, sa), (cb, sb) = _geometry(region, a, height, width), _geometry(region, b, height, width)
        speed = float(np.linalg.norm(cb - ca)) / ((b - a) * max((sa + sb) / 2, 1e-6))
        out.append((a, speed > threshold))
    return out


def _merge_short(spans: list[list[int]], min_len: int, max_events: int) -> list[tuple[int, int]]:
    def length(s):
        return s[1] - s[0] + 1

    while len(spans) > 1:
        short = [k for k, s in enumerate(spans) if length(s) < min_len]
        if not short and len(spans) <= max_events:
            break
        k = short[0] if short else min(range(len(spans)), key=lambda i: length(spans[i]))
        if k == 0:
            spans[1][0] = spans[0][0]
        else:
            spans[k - 1][1] = spans[k][1]
        del spans[k]
    return [(s, e) for s, e in spans]


def segment_events(
    region: RegionAnnotation,
    last_frame: int,
    config: StreamConfig,
    *,
    height: int | None = None,
    width: int | None = None,
    cuts: set[int] | None = None,
) -> list[tuple[int, int]]:
    """Inclusive (start, end) frame spans covering the region from its first annotated frame to ``last_frame``."""
    if config.intervals is not None:
        spans = [(s, min(e, last_frame)) for s, e in config.intervals if s <= last_frame]
        if not spans:
            raise ValueError(f"no given interval starts at or before the last frame {last_frame}")
        return spans
    annotated = region.annotated_frames()
    if not annotated:
        return []
    states = motion_states(region, height, width, config.motion_threshold)
    starts = [annotated[0]]
    for (f, moving), (_, prev) in zip(states[1:], states):
        if moving != prev:
            starts.append(f)
    for c in sorted(cuts or ()):
        if annotated[0] < c <= last_frame and c not in starts:
            starts.append(c)
    starts.sort()
    spans = [[s, (starts[k + 1] - 1) if k + 1 < len(starts) else last_frame] for k, s in enumerate(starts)]
    return _merge_short(spans, config.min_event_frames, config.max_events)


def shot_cuts(frames: np.ndarray, indices: list[int], threshold: float) -> set[int]:
    """Frames (from ``indices``) whose grey-level histogram differs from the previous one's by more than
    ``threshold`` (L1, 0..2)."""
    grey = frames.astype(np.float32).mean(axis=-1)
    hists = [np.histogram(g, bins=32, range=(0, 255))[0] / g.size for g in grey]
    return {indices[k] for k in range(1, len(hists)) if np.abs(hists[k] - hists[k - 1]).sum() > threshold}


def _event_frames(region: RegionAnnotation, start: int, end: int, n: int) -> list[int]:
    inside = [f for f in region.annotated_frames() if start <= f <= end]
    return keyframes_of(inside, n)


def caption_region(
    record: Record, g: int, backend: ChatBackend, prompt: Prompt, config: StreamConfig, spans: list[tuple[int, int]]
) -> list[Event] | str:
    """The region's events with captions, or a drop reason. Transport errors propagate."""
    region = record.regions[g]
    previous = "none (this is the first event)"
    events = []
    for start, end in spans:
        frames = _event_frames(region, start, end, config.keyframes)
        if not frames:
            return "event_without_annotated_frame"
        pixels = read_frames(record, frames, config.root)
        parts = [
            text_part(
                prompt.render(
                    num_frames=len(frames),
                    frames=", ".join(map(str, frames)),
                    start=start,
                    end=end,
                    label=source_label(region),
                    previous=previous,
                )
            )
        ]
        for f, image in zip(frames, pixels):
            h, w = image.shape[:2]
            parts.append(image_part(render(image, [mark_of(region, 1, f, h, w)], max_side=config.max_side)))
        answer = backend.complete(
            [{"role": "system", "content": prompt.system}, {"role": "user", "content": parts}],
            max_tokens=config.max_tokens,
            temperature=config.temperature,
        )
        try:
            caption = parse_json_object(answer).get("caption")
        except ValueError:
            return "unparsable_answer"
        if not isinstance(caption, str) or not caption.strip():
            return "answer_lacks_caption"
        events.append(Event(start_frame=start, end_frame=end, caption={"en": caption.strip()}))
        previous = caption.strip()
    return events


def build_streaming(
    path: str, out: str, backend: ChatBackend, config: StreamConfig, manifest: Manifest
) -> dict[str, Any]:
    """Segment and caption every video record of ``path`` into ``out`` (appending, resumable)."""
    if config.root is None:
        config.root = os.path.dirname(os.path.abspath(path))
    prompt = load_prompt("stream_caption", config.prompt_version)
    manifest.prompts[prompt.name] = prompt.version
    manifest.backend = backend.describe()
    manifest.settings.update(config.as_dict())
    manifest.add_input(path)
    manifest.outputs.append(out)
    output = ResumableOutput(out)
    regions_step, records_step, events_step = (
        manifest.step("regions"),
        manifest.step("records"),
        manifest.step("events"),
    )
    todo = []
    for record in iter_records(path):
        if record.media_type != "video":
            records_step.dropped["not_a_video"] += 1
            continue
        if record.id in output.done:
            manifest.counts["records_already_done"] += 1
            continue
        todo.append(record)

    def one(record: Record):
        try:
            total = count_frames(record, config.root)
            cuts = None
            if config.shot_threshold is not None:
                idx = list(range(total))
                cuts = shot_cuts(read_frames(record, idx, config.root), idx, config.shot_threshold)
            results = []
            for g, region in enumerate(record.regions):
                spans = segment_events(region, total - 1, config, height=record.height, width=record.width, cuts=cuts)
                results.append(
                    caption_region(record, g, backend, prompt, config, spans) if spans else "no_annotated_frame"
                )
            return results
        except BadSample as err:
            return err
        except ChatError as err:
            return err

    failure = None
    with ThreadPoolExecutor(max_workers=config.max_workers) as pool:
        for record, results in zip(todo, pool.map(one, todo)):
            if isinstance(results, ChatError):
                failure = failure or results
                continue
            if isinstance(results, BadSample):
                records_step.dropped[f"media_{results.reason}"] += 1
                continue
            kept = []
            for region, result in zip(record.regions, results):
                if isinstance(result, str):
                    regions_step.dropped[result] += 1
                    continue
                region.events = result
                regions_step.kept += 1
                events_step.kept += len(result)
                kept.append(region)
            if not kept:
                records_step.dropped["no_region_left"] += 1
                continue
            record.regions = kept
            records_step.kept += 1
            output.append([record])
    manifest.usage = backend.usage.as_dict()
    if failure is not None:
        manifest.counts["stopped_by_error"] = 1
        manifest.settings["error"] = str(failure)
        raise failure
    return manifest.as_dict()
