"""Streaming region captions on ActivityNet, in upstream PAM's ``eval/example_data`` format.

Data: JSON objects one after another (JSON lines as ``input_full.jsonl``, or pretty-printed objects
spanning many lines), each ``{"type": "video", "image_root": folder, "annotations": [{"event_id",
"frames": [file names], "gt": caption, "box": [[x, y, w, h]]}]}``; the box is on the event's
first frame. A relative ``image_root`` resolves against ``frames_root`` (default: the data file's
folder); an absolute one that does not exist (the shipped files name the authors' machine) is
looked up as ``frames_root/<its last folder name>`` or ``frames_root/frames/<its last folder name>``.

Each video is one item, streamed as :meth:`PAMPredictor.stream` does: one SAM 2 tracking state
for the whole video, prompted with the first event's box on its first frame, tracks each event's
frames in annotation order (``generation.track_frames`` of each event's frames, spread evenly, 0 =
all), so SAM 2's memory carries across events; each event is captioned from its own tracked frames
with the previous caption as history. The later events' boxes are read and checked but not used as
prompts (upstream's notebook restarts tracking per segment from a box).

A box with no area (line 268 of the official ``input_full.jsonl`` has one of height 0) is logged
with its file, line and field and counted in ``degenerate_boxes``; when it is the video's prompt
box the video is left out (``skipped_videos``), else the run goes on unchanged.

Scores, as ``eval/eval.py``: METEOR and CIDEr (pycocoevalcap, x100) pooled over all events, on the
raw text (``ptb_tokenize=true`` tokenizes both sides with the PTB tokenizer first). The judged
continuity score G-STDC is the separate benchmark ``gstdc`` (:mod:`.gstdc`), on the same items
and prediction files.

``eval.py``'s loader reads a file as one JSON document, else line by line: a single object, even
pretty-printed (its ``output_tmp.jsonl``), or JSON lines load; a file of two or more pretty-printed
objects loses them all silently there. This reader decodes any sequence of whole JSON objects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..config import BenchmarkConfig, GenerationConfig
from ..media import DegenerateBoxError, load_clip, xywh_to_xyxy
from ..metrics import caption_metrics, raw_meteor_cider
from ..predictions import match_predictions
from ..registry import Benchmark, register

log = logging.getLogger("pam.eval")


@dataclass
class StreamConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=128)
    )
    frames_root: str | None = None  # base of relative image_root folders; None = the data file's folder
    ptb_tokenize: bool = False  # METEOR/CIDEr after pycocoevalcap's PTB tokenizer (eval.py scores the raw text)


def read_json_stream(path: str | Path) -> list[tuple[int, dict]]:
    """Every top-level JSON object of a file with the line it starts on: one JSON document, JSON
    lines, or objects spread over lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"streaming annotation file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            bad = text.count("\n", 0, err.pos) + 1
            raise ValueError(f"{path}:{bad}: invalid JSON ({err.msg})") from err
        out.extend((line, o) for o in (obj if isinstance(obj, list) else [obj]))
    return out


def resolve_root(base: Path, image_root: str) -> Path:
    """A relative ``image_root`` under ``base``; an absolute one as given when it exists, else found
    as ``base/<its last folder>`` or ``base/frames/<its last folder>`` (upstream's README unzips the
    frames to ``eval/example_data/frames``)."""
    root = Path(image_root)
    if not root.is_absolute():
        return base / root
    if root.exists():
        return root
    for candidate in (base / root.name, base / "frames" / root.name):
        if candidate.exists():
            return candidate
    return root


@register
class ActivityNetStream(Benchmark):
    name = "activitynet_stream"
    paper = {"cider": 30.1, "meteor": 27.3}  # PAM-3B, paper tables
    config_class = StreamConfig
    description = "ActivityNet streaming captions: METEOR / CIDEr"
    official: ClassVar[dict[str, str]] = {
        "repo": "Perceive-Anything/PAM",
        "path": "eval/eval.py (calculate_metrics), eval/example_data/*.jsonl",
        "commit": "2fc36d306514f05dcbb1a8c8ec61278dd4aad897",
    }
    options: ClassVar[dict[str, str]] = {
        "ptb_tokenize=true": (
            "METEOR and CIDEr after the PTB tokenizer (lower case, no punctuation); eval.py scores the raw text"
        ),
    }
    notes: ClassVar[str] = (
        "eval.py reads --g_stdc but looks up args.continuity, so it stops before scoring when run as documented; the "
        "default scores what calculate_metrics computes. Line breaks in captions become spaces (METEOR reads one line "
        "per item). A box with no area is logged and counted; a video whose prompt box has none is left out."
    )
    metrics: ClassVar[tuple[str, ...]] = ("meteor", "cider")

    def read_items(self, data: str | Path) -> list[dict]:
        base = Path(self.config.frames_root) if self.config.frames_root else Path(data).parent
        items = []
        self.degenerate_boxes, self.skipped_videos = 0, 0
        for k, (line, video) in enumerate(read_json_stream(data)):
            where = f"{data}:{line}: record {k}"
            if (
                not isinstance(video, dict)
                or not isinstance(video.get("annotations"), list)
                or not video["annotations"]
            ):
                raise ValueError(f"{where}, field 'annotations': missing or empty")
            root = video.get("image_root")
            if not isinstance(root, str):
                raise ValueError(f"{where}, field 'image_root': missing or not a string")
            events, skip = [], False
            for e, ev in enumerate(video["annotations"]):
                ew = (
                    f"{where} ({Path(root).name}), event {ev.get('event_id', e + 1) if isinstance(ev, dict) else e + 1}"
                )
                if not isinstance(ev, dict):
                    raise ValueError(f"{ew}: expected a JSON object")
                if not isinstance(ev.get("gt"), str):
                    raise ValueError(f"{ew}, field 'gt': missing or not a string")
                if not isinstance(ev.get("frames"), list) or not ev["frames"]:
                    raise ValueError(f"{ew}, field 'frames': missing or empty")
                boxes = ev.get("box")
                if not isinstance(boxes, list) or not boxes:
                    raise ValueError(f"{ew}, field 'box': needs [[x, y, w, h]]")
                try:
                    box = xywh_to_xyxy(boxes[0], f"{ew}, field 'box'")
                except DegenerateBoxError as err:
                    self.degenerate_boxes += 1
                    skip = skip or e == 0
                    log.warning("%s (%s)", err, "the prompt box: video left out" if e == 0 else "not a prompt: kept")
                    box = None
                events.append(
                    {"event_id": ev.get("event_id", e + 1), "frames": ev["frames"], "gt": ev["gt"], "box": box}
                )
            if skip:
                self.skipped_videos += 1
                continue
            items.append({"id": f"{k}:{Path(root).name}", "root": str(resolve_root(base, root)), "events": events})
        if not items:
            raise ValueError(f"{data}: no videos")
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            frames, ends = self.video_frames(it)
            captions = generator.describe_events(frames, {"box": it["events"][0]["box"]}, ends)
            rows.append(
                {
                    "id": it["id"],
                    "events": [{"event_id": ev["event_id"], "pred": c} for ev, c in zip(it["events"], captions)],
                }
            )
        return rows

    def video_frames(self, item: dict) -> tuple[np.ndarray, list[int]]:
        """The frames one tracking state runs through (each event's tracked frames, events in
        order) and the position of each event's last frame among them."""
        track = self.config.generation.track_frames
        clips = [
            load_clip([str(Path(item["root"]) / f) for f in ev["frames"]], 0, None, track) for ev in item["events"]
        ]
        return np.concatenate(clips), (np.cumsum([len(c) for c in clips]) - 1).tolist()

    def event_pairs(self, predictions: Sequence[dict], items: Sequence[dict]) -> list[tuple[int, str, str]]:
        """(video index, gt, pred) of every event, videos and events in order."""
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        pairs = []
        for v, (it, row) in enumerate(zip(items, rows)):
            events = row.get("events")
            if not isinstance(events, list) or len(events) != len(it["events"]):
                raise ValueError(
                    f"{self.name}: prediction {it['id']!r}, field 'events': must list {len(it['events'])} events"
                )
            for ev, pe in zip(it["events"], events):
                if not isinstance(pe, dict) or not isinstance(pe.get("pred"), str):
                    raise ValueError(
                        f"{self.name}: prediction {it['id']!r}, event {ev['event_id']}, field 'pred': "
                        "missing or not a string"
                    )
                pairs.append((v, ev["gt"], pe["pred"]))
        return pairs

    def _counts(self) -> dict[str, int]:
        return {
            "degenerate_boxes": getattr(self, "degenerate_boxes", 0),
            "skipped_videos": getattr(self, "skipped_videos", 0),
        }

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        pairs = self.event_pairs(predictions, items)
        preds, gts = [p for _, _, p in pairs], [g for _, g, _ in pairs]
        if self.config.ptb_tokenize:
            caps = caption_metrics(preds, [[g] for g in gts], metrics=("METEOR", "CIDEr"))
        else:
            caps = raw_meteor_cider(preds, gts)
        return {
            "meteor": 100.0 * caps["meteor"],
            "cider": 100.0 * caps["cider"],
            "num_videos": len(items),
            "num_events": len(pairs),
            **self._counts(),
        }
