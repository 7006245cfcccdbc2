"""VideoRefer-Bench-Q: multiple-choice questions about regions in a video; accuracy per type.

Data: ``VideoRefer-Bench-Q.json`` in the official layout (see :mod:`._videorefer`; ``Question``
with one ``<objectN><region>`` tag per object, ``type``, ``options`` like ``"(A) ..."``,
``Answer``), videos (DAVIS / MeViS frame folders) relative to ``video_root`` (default: the file's
folder).

Question, as the official inference builds it: the question, a space, the options joined by
spaces, then ``". "`` and ``instruction``. PAM takes one region per prompt, so the object tags are
rewritten: the prompted object's tag becomes ``object_word``, any other object's tag ``object N``.
A question about two or more objects is answered with one of them prompted (``multi_object``):
``first`` (default) prompts the first object, ``union`` prompts the union of all objects' masks
on ``frame_idx`` and names every tag ``object_word``.

Scoring, as ``eval_videorefer_bench_q.py``: the letter is the first ``(X)`` in the answer, else
the first ``X)``, else the answer's first character once ``.`` is removed; the ground truth is the
``(X)`` of ``Answer`` (else all of ``Answer``); compared case-insensitively. An empty answer is
wrong (the official script stops on it). Scores x100: ``accuracy`` (all items; the figure the paper
reports), ``accuracy/<type>``, and ``accuracy/single_object`` / ``accuracy/multi_object``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..config import BenchmarkConfig, GenerationConfig
from ..media import load_clip, load_json
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._common import media_root
from ._videorefer import frame_size, load_object_clip, object_mask, read_objects

log = logging.getLogger("pam.eval")

_TAG = re.compile(r"<object(\d+)>\s*<region>|<region>")
_PAREN = re.compile(r"\(([A-Z])\)")
_HALF = re.compile(r"([A-Z])\)")
MULTI_OBJECT = ("first", "union")


@dataclass
class VideoReferQConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task=None, max_new_tokens=16))
    video_root: str | None = (
        None  # folder the entries' "video" paths are relative to; None = the file's folder (or its videos/)
    )
    object_word: str = "the subject"  # the prompted object's tag in the question
    instruction: str = "Answer with the option's letter from the given choices directly."  # after the options and ". "
    multi_object: str = "first"  # questions about several objects: prompt the first object, or the union of all masks

    def validate(self) -> None:
        super().validate()
        if self.multi_object not in MULTI_OBJECT:
            raise ValueError(f"{self.name}.multi_object: expected one of {MULTI_OBJECT}, got {self.multi_object!r}")


def answer_letter(pred: str) -> str | None:
    """The official reading of a model answer; None for an empty answer (counted wrong)."""
    m = _PAREN.search(pred) or _HALF.search(pred)
    if m:
        return m.group(1)
    rest = pred.replace(".", "")
    return rest[0] if rest else None


def truth_letter(answer: str) -> str:
    m = _PAREN.search(answer)
    return m.group(1) if m else answer


def rewrite_tags(question: str, prompted: int | None, object_word: str) -> str:
    """``<objectN><region>`` tags as words: the k-th tag is object k; ``prompted`` None names all ``object_word``."""
    count = iter(range(1 << 30))

    def name(m: re.Match) -> str:
        k = next(count)
        if prompted is None or k == prompted:
            return object_word
        return f"object {m.group(1) if m.group(1) is not None else k}"

    return _TAG.sub(name, question)


@register
class VideoReferQ(Benchmark):
    name = "videorefer_q"
    config_class = VideoReferQConfig
    description = "VideoRefer-Bench-Q multiple choice: accuracy per question type"
    official: ClassVar[dict[str, str]] = {
        "repo": "DAMO-NLP-SG/VideoRefer",
        "path": (
            "videorefer/eval/eval_videorefer_bench_q.py, videorefer/eval/inference_videorefer_q_bench.py (mode single)"
        ),
        "commit": "cbd4207bf12e9d2f67ac71e54a260dd96697a83a",
    }
    options: ClassVar[dict[str, str]] = {
        "multi_object=first": (
            "default: a question about several objects prompts its first object only (PAM takes one region)"
        ),
        "multi_object=union": "a question about several objects prompts the union of their masks on frame_idx",
    }
    notes: ClassVar[str] = (
        "PAM tracks from frame_idx to the end of the video; the official model also sees the frames before it. "
        "The official scorer stops on an empty answer; here it is scored wrong. The official inference gives every "
        "object its own region slot; PAM takes one region per prompt, so multi-object questions prompt one object "
        "(multi_object) and name the others 'object N'. An object whose mask on frame_idx is null is prompted on "
        "its nearest annotated frame with a mask."
    )
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "accuracy/single_object")

    def read_items(self, data: str | Path) -> list[dict]:
        entries = load_json(data)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{data}: expected a non-empty JSON list (VideoRefer-Bench-Q)")
        root = str(media_root(data, self.config.video_root, "videos"))
        items = []
        for k, e in enumerate(entries):
            where = f"{data}: record {k} (id {e.get('id', k)!r})" if isinstance(e, dict) else f"{data}: record {k}"
            if not isinstance(e, dict):
                raise ValueError(f"{where}: expected a JSON object")
            for key, kind in (("video", str), ("Question", str), ("type", str), ("options", list), ("Answer", str)):
                if not isinstance(e.get(key), kind):
                    raise ValueError(f"{where}, field {key!r}: missing or not a {kind.__name__}")
            if not all(isinstance(o, str) for o in e["options"]):
                raise ValueError(f"{where}, field 'options': expected a list of strings")
            frame, objects = read_objects(e, where)
            multi = len(objects) > 1
            prompted = None if multi and self.config.multi_object == "union" else 0
            question = rewrite_tags(e["Question"], prompted, self.config.object_word)
            text = question + " " + " ".join(e["options"]) + ". " + self.config.instruction
            items.append(
                {
                    "id": e.get("id", k),
                    "where": where,
                    "root": root,
                    "video": e["video"],
                    "frame": frame,
                    "objects": objects,
                    "text": text,
                    "type": e["type"],
                    "answer": e["Answer"],
                    "multi_object": multi,
                }
            )
        return items

    def _clip(self, item: dict) -> tuple[np.ndarray, dict] | None:
        track = self.config.generation.track_frames
        if item["multi_object"] and self.config.multi_object == "union":
            video = Path(item["root"]) / item["video"]
            h, w = frame_size(video)
            mask = np.zeros((h, w), bool)
            for k in range(len(item["objects"])):
                mask |= object_mask(item, k, item["frame"], h, w)
            if mask.any():
                return load_clip(video, item["frame"], None, track), {"mask": mask}
            log.warning(
                "%s, field 'annotation': every object's mask on frame_idx is empty; prompting object 0", item["where"]
            )
        return load_object_clip(item, 0, track)

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            clip = self._clip(it)
            text = "" if clip is None else generator.describe_video(clip[0], clip[1], text=it["text"])
            rows.append({"id": it["id"], "prediction": text})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        by_type: dict[str, list[bool]] = {}
        by_count: dict[str, list[bool]] = {"single_object": [], "multi_object": []}
        empty = 0
        for it, r in zip(items, rows):
            pred = r.get("prediction")
            if not isinstance(pred, str):
                raise ValueError(f"{self.name}: prediction {it['id']!r}, field 'prediction': missing or not a string")
            letter = answer_letter(pred)
            empty += letter is None
            right = letter is not None and letter.lower() == truth_letter(it["answer"]).lower()
            by_type.setdefault(it["type"], []).append(right)
            by_count["multi_object" if it["multi_object"] else "single_object"].append(right)
        allv = [v for vs in by_type.values() for v in vs]
        out: dict[str, float] = {"accuracy": 100 * sum(allv) / len(allv)}
        out.update({f"accuracy/{t}": 100 * sum(v) / len(v) for t, v in by_type.items()})
        for key, v in by_count.items():
            if v:
                out[f"accuracy/{key}"] = 100 * sum(v) / len(v)
            out[f"num_{key}"] = len(v)
        out.update(num_items=len(allv), empty_answers=empty)
        return out
