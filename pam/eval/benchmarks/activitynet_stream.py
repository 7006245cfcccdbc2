"""Streaming region captions on ActivityNet, in upstream PAM's ``eval/example_data`` format.

Data: JSON objects one after another (JSON lines, or pretty-printed objects spanning many lines),
each ``{"type": "video", "image_root": folder, "annotations": [{"event_id", "frames": [file
names], "gt": caption, "box": [[x, y, w, h]]}]}``; the box is on the event's first frame. A
relative ``image_root`` resolves against ``frames_root`` (default: the data file's folder).
Each video is one item, streamed as :meth:`PAMPredictor.stream` does: one SAM 2 tracking state
for the whole video, prompted with the first event's box on its first frame, tracks each event's
frames in annotation order (``generation.track_frames`` of each event's frames, spread evenly, 0 =
all), so SAM 2's memory carries across events; each event is captioned from its own tracked frames
(the LLM sees the model's ``video_num_frames`` of them) with the previous caption as history. The
later events' boxes are read and checked but not used as prompts (upstream's notebook restarts
tracking per segment from a box; see README). Scores: METEOR and CIDEr (x100) pooled over all events after PTB tokenisation, and
G-STDC, the judge's 0-5 continuity score per video, averaged over videos (with a judge).

Upstream's ``eval/eval.py`` bugs, fixed here:
1. ``--g_stdc`` is parsed but ``args.continuity`` is read (AttributeError): G-STDC is on whenever a
   judge is given (``g_stdc: true``).
2. G-STDC groups events by a ``video_id`` the annotations lack, so every event of every video
   lands in one "unknown" video and one judge call: here each video object is its own group.
3. METEOR and CIDEr get raw text, with no PTB tokenisation: here both sides are PTB-tokenised.
4. Its JSON-lines fallback reads line by line, so pretty-printed multi-line objects (like its own
   ``output_tmp.jsonl``) are silently skipped: here a stream of whole JSON objects is decoded.
5. Events with fewer than 16 frames: an event is captioned from all of its frames when it has
   fewer than the model's ``video_num_frames`` (nothing is padded or dropped); an event without
   frames is an error naming the video and event.
Also: a failed or unparsable judge answer scores 0 silently upstream; here it raises (failed
request) or is counted in ``g_stdc_unparsed`` and scored 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import ask_all, user
from ..media import load_clip, xywh_to_xyxy
from ..metrics import caption_metrics
from ..predictions import match_predictions
from ..registry import Benchmark, register


@dataclass
class StreamConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=128))
    judge: JudgeConfig | None = field(default_factory=lambda: JudgeConfig(model="gpt-4o", max_tokens=1024))
    frames_root: str | None = None  # base of relative image_root folders; None = the data file's folder
    g_stdc: bool = True  # score continuity with the judge (needs judge settings or a judge object)


def read_json_stream(path: str | Path) -> list[dict]:
    """Every top-level JSON object of a file: one JSON document, JSON lines, or objects spread over lines."""
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
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            line = text.count("\n", 0, err.pos) + 1
            raise ValueError(f"{path}:{line}: invalid JSON ({err.msg})") from err
        out.extend(obj if isinstance(obj, list) else [obj])
    return out


JUDGE_PROMPT = """You evaluate how continuous and coherent a sequence of video segment descriptions is, compared with the ground-truth descriptions of the same segments.
Judge temporal continuity, action continuity, subject consistency, context preservation and logical flow.

Ground-truth segments:
{gt}

Predicted segments:
{pred}

Answer in this format:
Continuity Score: <a number from 0 to 5, 5 = perfect continuity>
Explanation: <one or two sentences>"""

_SCORE = re.compile(r"Continuity Score:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_continuity(answer: str) -> float | None:
    m = _SCORE.search(answer)
    if m is None:
        return None
    value = float(m.group(1))
    return value if 0 <= value <= 5 else None


@register
class ActivityNetStream(Benchmark):
    name = "activitynet_stream"
    paper = {"cider": 30.1, "meteor": 27.3, "g_stdc": 2.67}  # PAM-3B, paper tables
    config_class = StreamConfig
    needs_judge = True
    description = "ActivityNet streaming captions: METEOR / CIDEr / G-STDC (judge)"

    def read_items(self, data: str | Path) -> list[dict]:
        base = Path(self.config.frames_root) if self.config.frames_root else Path(data).parent
        items = []
        for k, video in enumerate(read_json_stream(data)):
            where = f"{data}: video {k}"
            if not isinstance(video, dict) or not isinstance(video.get("annotations"), list) or not video["annotations"]:
                raise ValueError(f"{where}: needs a non-empty 'annotations' list")
            root = video.get("image_root")
            if not isinstance(root, str):
                raise ValueError(f"{where}: missing 'image_root'")
            events = []
            for e, ev in enumerate(video["annotations"]):
                ew = f"{where} ({Path(root).name}), event {ev.get('event_id', e)}"
                if not isinstance(ev.get("gt"), str) or not ev["gt"].strip():
                    raise ValueError(f"{ew}: needs a 'gt' caption")
                if not isinstance(ev.get("frames"), list) or not ev["frames"]:
                    raise ValueError(f"{ew}: has no frames")
                boxes = ev.get("box")
                if not isinstance(boxes, list) or not boxes:
                    raise ValueError(f"{ew}: needs 'box': [[x, y, w, h]]")
                events.append({"event_id": ev.get("event_id", e + 1), "frames": ev["frames"], "gt": ev["gt"], "box": xywh_to_xyxy(boxes[0], f"{ew}: box")})
            items.append({"id": f"{k}:{Path(root).name}", "root": str(base / root), "events": events})
        if not items:
            raise ValueError(f"{data}: no videos")
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            frames, ends = self.video_frames(it)
            captions = generator.describe_events(frames, {"box": it["events"][0]["box"]}, ends)
            rows.append({"id": it["id"], "events": [{"event_id": ev["event_id"], "pred": c} for ev, c in zip(it["events"], captions)]})
        return rows

    def video_frames(self, item: dict) -> tuple[np.ndarray, list[int]]:
        """The frames one tracking state runs through (each event's tracked frames, events in
        order) and the position of each event's last frame among them."""
        clips = [load_clip([str(Path(item["root"]) / f) for f in ev["frames"]], 0, None, self.config.generation.track_frames) for ev in item["events"]]
        return np.concatenate(clips), (np.cumsum([len(c) for c in clips]) - 1).tolist()

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        pairs = []  # (video index, gt, pred)
        for v, (it, row) in enumerate(zip(items, rows)):
            events = row.get("events")
            if not isinstance(events, list) or len(events) != len(it["events"]):
                raise ValueError(f"{self.name}: prediction {it['id']!r} must list {len(it['events'])} events")
            for ev, pe in zip(it["events"], events):
                if not isinstance(pe, dict) or not isinstance(pe.get("pred"), str):
                    raise ValueError(f"{self.name}: prediction {it['id']!r}, event {ev['event_id']}: needs a 'pred' string")
                pairs.append((v, ev["gt"], pe["pred"]))
        caps = caption_metrics([p for _, _, p in pairs], [[g] for _, g, _ in pairs], metrics=("METEOR", "CIDEr"))
        out: dict[str, float] = {"meteor": 100.0 * caps["meteor"], "cider": 100.0 * caps["cider"], "num_videos": len(items), "num_events": len(pairs)}
        if self.config.g_stdc:
            if judge is None:
                raise ValueError(f"{self.name}: G-STDC needs a judge (set judge settings, or g_stdc=false)")
            prompts = []
            for v in range(len(items)):
                gts = [g for i, g, _ in pairs if i == v]
                preds = [p for i, _, p in pairs if i == v]
                prompts.append(user(JUDGE_PROMPT.format(
                    gt="\n".join(f"Segment {i + 1}: {g}" for i, g in enumerate(gts)),
                    pred="\n".join(f"Segment {i + 1}: {p}" for i, p in enumerate(preds)),
                )))
            parsed = [parse_continuity(a) for a in ask_all(judge, prompts, self.config.judge)]
            out["g_stdc"] = sum(s or 0.0 for s in parsed) / len(parsed)
            out["g_stdc_unparsed"] = sum(s is None for s in parsed)
        return out
