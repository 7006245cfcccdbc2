"""VideoRefer-Bench-Q: multiple-choice questions about a region in a video; accuracy per type.

Data: ``VideoRefer-Bench-Q.json`` (list of ``{"id"?, "video", "Question", "type", "options":
["(A) ...", ...], "Answer": "(B) ...", "annotation"}``; see :mod:`._videorefer`). Object tags in
the question (``<object0><region>``) are replaced by ``object_word``. The answer letter is read
from PAM's output (no judge). Scores x100: ``accuracy`` and ``accuracy/<type>`` for each type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig
from ..judge import parse_choice
from ..media import load_json
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._common import media_root
from ._videorefer import first_object_region, load_item_clip

_TAG = re.compile(r"<object\d+>\s*<region>|<region>|\[region\d*\]")
_OPTION = re.compile(r"^\s*\(?([A-Z])\)?[\.:]?\s*")


@dataclass
class VideoReferQConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task=None, max_new_tokens=16))
    video_root: str | None = None  # folder of videos; None = <file folder>/videos, else the file's folder
    object_word: str = "the subject"  # replaces the object tags in questions
    instruction: str = "Answer with the option's letter from the given choices directly."  # appended to the options


def option_letter(text: str, where: str) -> str:
    m = _OPTION.match(text)
    if m is None:
        raise ValueError(f"{where}: option {text!r} does not start with a letter like '(A)'")
    return m.group(1)


@register
class VideoReferQ(Benchmark):
    name = "videorefer_q"
    config_class = VideoReferQConfig
    description = "VideoRefer-Bench-Q multiple choice: accuracy per question type"

    def read_items(self, data: str | Path) -> list[dict]:
        entries = load_json(data)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{data}: expected a non-empty JSON list (VideoRefer-Bench-Q)")
        root = str(media_root(data, self.config.video_root, "videos"))
        items = []
        for k, e in enumerate(entries):
            where = f"{data}: entry {k}"
            for key in ("video", "Question", "type", "options", "Answer"):
                if key not in e:
                    raise ValueError(f"{where}: missing {key!r}")
            letters = [option_letter(o, where) for o in e["options"]]
            answer = option_letter(e["Answer"], where)
            if answer not in letters:
                raise ValueError(f"{where}: answer {e['Answer']!r} is not one of the options")
            frame, seg = first_object_region(e, where)
            question = _TAG.sub(self.config.object_word, e["Question"])
            text = question + "\n" + "\n".join(e["options"]) + "\n" + self.config.instruction
            items.append({"id": e.get("id", k), "root": root, "video": e["video"], "frame": frame, "segmentation": seg, "text": text,
                          "type": e["type"], "options": e["options"], "answer": answer})
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            frames, region = load_item_clip(it, self.config.generation.track_frames)
            rows.append({"id": it["id"], "prediction": generator.describe_video(frames, region, text=it["text"])})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        by_type: dict[str, list[bool]] = {}
        for it, r in zip(items, rows):
            texts = [_OPTION.sub("", o, count=1) for o in it["options"]]
            idx = parse_choice(str(r.get("prediction", "")), len(it["options"]), texts)
            letter = None if idx is None else option_letter(it["options"][idx], "option")
            by_type.setdefault(it["type"], []).append(letter == it["answer"])
        allv = [v for vs in by_type.values() for v in vs]
        out = {"accuracy": 100 * sum(allv) / len(allv)}
        out.update({f"accuracy/{t}": 100 * sum(v) / len(v) for t, v in sorted(by_type.items())})
        out["num_items"] = len(allv)
        return out
