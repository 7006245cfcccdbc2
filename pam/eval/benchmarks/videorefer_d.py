"""VideoRefer-Bench-D: video region descriptions scored by a judge on four 0-5 dimensions.

Data: ``VideoRefer-Bench-D.json`` in the official layout (see :mod:`._videorefer`; entries with
``video``, ``caption``, ``frame_idx``, ``annotation``); the mp4 files live in ``Panda-70M-part/``
beside it (``video_root`` overrides). PAM describes the object prompted with its mask on
``frame_idx``, tracked from there to the end of the clip.

Judging, as the official ``videorefer_bench_d`` scripts (``1.eval_gpt_new.py`` for the request
parameters, ``2.extract_re.py``, ``3.analyze_score.py``): the official system prompt, the user
message ``"##Correct answer: <caption>\\n##Predicted answer: <prediction>\\n"``, temperature 0.7,
``max_tokens`` 800, ``top_p`` 0.95. Each answer is read with the official pattern (a numbered
label, a colon, whitespace, a number); a dimension counts an item only where its exact label was
read, and each dimension is the mean over those items. ``average`` is the mean of the four means.
``unparsed`` counts answers that gave no score for at least one dimension.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..media import load_json
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._common import media_root
from ._judged import ask_with
from ._videorefer import load_object_clip, read_objects

DIMENSIONS = {
    "subject_correspondence": "Subject Correspondence",
    "appearance": "Appearance Description",
    "temporal": "Temporal Description",
    "hallucination": "Hallucination Detection",
}
_SCORE_LINE = re.compile(r"\d+\.\s+(.*?):\s+([\d.]+)")  # 2.extract_re.py's pattern

# The official judge system prompt, byte for byte (videorefer/eval/videorefer_bench_d/system.txt;
# its example lines hold a literal backslash-n and non-breaking spaces).
SYSTEM_PROMPT = (
    "You are an advanced intelligent chatbot specialized in evaluating the factual accuracy of "
    "generative outputs related to object-based video descriptions.\n"
    "Your primary task is to meticulously compare the predicted answer with the correct answer "
    "and assess their factual consistency. To accomplish this, you will evaluate the "
    "descriptions across four key dimensions:\n"
    "1. Subject Correspondence: Assess whether the subject of the input description accurately "
    "matches the subject indicated in the ground truth description.\n"
    "2. Appearance Description: Evaluate the accuracy of the appearance details, including "
    "color, shape, size, texture, and any other relevant visual attributes.\n"
    "3. Temporal Description: Analyze whether the depiction of the object's motion aligns with "
    "the actual movements described in the correct answer.\n"
    "4. Hallucination Detection: Identify any discrepancies by determining if the description "
    "includes facts, actions, or elements that do not exist in reality, such as imaginative "
    "interpretations or incorrect inferences.\n"
    "Please assign a score for each of these four dimensions, using an integer from 0 to 5, "
    "where 5 indicates a perfect match and 0 signifies no relevance at all. Accompany your "
    "assessments with brief explanations to clarify your scoring rationale.\n"
    "### OUTPUT FORMAT(EXAMPLE)\n"
    "1. Subject Correspondence: 5\\nExplanation:\xa0xxx\n"
    "2. Appearance Description: 4\\nExplanation:\xa0xxx\n"
    "3. Temporal Description: 5\\nExplanation:\xa0xxx\n"
    "4. Hallucination Detection: 3\\nExplanation:\xa0xxx"
)


def judge_messages(caption: str, prediction: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "##Correct answer: " + caption + "\n" + "##Predicted answer: " + prediction + "\n"},
    ]


def parse_scores(answer: str) -> dict[str, float] | None:
    """``{label: score}`` as ``2.extract_re.py`` reads a judge answer (later repeats win); None where
    that script fails on the answer (a score that is not a number), which drops every label."""
    try:
        return {label: float(value) for label, value in _SCORE_LINE.findall(answer)}
    except ValueError:
        return None


@dataclass
class VideoReferDConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=256)
    )
    judge: JudgeConfig | None = field(default_factory=lambda: JudgeConfig(temperature=0.7, max_tokens=800))
    judge_top_p: float = 0.95  # the official request's top_p
    video_root: str | None = (
        None  # folder of the mp4 files; None = Panda-70M-part/ beside the file, else the file's folder
    )


@register
class VideoReferD(Benchmark):
    name = "videorefer_d"
    config_class = VideoReferDConfig
    needs_judge = True
    description = "VideoRefer-Bench-D descriptions, judged: SC / AD / TD / HD (0-5)"
    official: ClassVar[dict[str, str]] = {
        "repo": "DAMO-NLP-SG/VideoRefer",
        "path": "videorefer/eval/videorefer_bench_d/{system.txt,1.eval_gpt_new.py,2.extract_re.py,3.analyze_score.py}",
        "commit": "cbd4207bf12e9d2f67ac71e54a260dd96697a83a",
    }
    options: ClassVar[dict[str, str]] = {}
    notes: ClassVar[str] = (
        "1.eval_gpt_new.py passes an undefined name to the client and never runs; the default sends what it "
        "evidently meant (the system prompt and user message it builds, temperature 0.7, max_tokens 800, top_p 0.95), "
        "as the working copy in videorefer_videollama3/ does. Message contents are sent as strings, not one-part "
        "lists. "
        "3.analyze_score.py divides by zero when no answer gives a dimension; here that is an error naming it. "
        "PAM tracks from frame_idx to the end of the clip; the official model also sees the frames before it."
    )
    metrics: ClassVar[tuple[str, ...]] = (
        "subject_correspondence",
        "appearance",
        "temporal",
        "hallucination",
        "average",
    )

    def read_items(self, data: str | Path) -> list[dict]:
        entries = load_json(data)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{data}: expected a non-empty JSON list (VideoRefer-Bench-D)")
        root = str(media_root(data, self.config.video_root, "Panda-70M-part"))
        items = []
        for k, e in enumerate(entries):
            where = f"{data}: record {k} (id {e.get('id', k)!r})" if isinstance(e, dict) else f"{data}: record {k}"
            if not isinstance(e, dict):
                raise ValueError(f"{where}: expected a JSON object")
            for key in ("video", "caption"):
                if not isinstance(e.get(key), str):
                    raise ValueError(f"{where}, field {key!r}: missing or not a string")
            frame, objects = read_objects(e, where)
            items.append(
                {
                    "id": e.get("id", k),
                    "where": where,
                    "root": root,
                    "video": e["video"],
                    "frame": frame,
                    "objects": objects,
                    "reference": e["caption"],
                }
            )
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            clip = load_object_clip(it, 0, self.config.generation.track_frames)
            rows.append({"id": it["id"], "prediction": "" if clip is None else generator.describe_video(*clip)})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("videorefer_d is scored by a judge LLM: give judge settings or a judge object")
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        for it, r in zip(items, rows):
            if not isinstance(r.get("prediction"), str):
                raise ValueError(f"{self.name}: prediction {it['id']!r}, field 'prediction': missing or not a string")
        cfg = self.config.judge or JudgeConfig(temperature=0.7, max_tokens=800)
        answers = ask_with(
            judge,
            [judge_messages(it["reference"], r["prediction"]) for it, r in zip(items, rows)],
            max_workers=cfg.max_workers,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            top_p=self.config.judge_top_p,
        )
        parsed = [parse_scores(a) or {} for a in answers]
        out: dict[str, float] = {}
        for key, label in DIMENSIONS.items():
            values = [p[label] for p in parsed if label in p]
            if not values:
                raise ValueError(
                    f"{self.name}: no judge answer gave a {label!r} score (the official script divides by zero)"
                )
            out[key] = sum(values) / len(values)
            out[f"num_{key}"] = len(values)
        out["average"] = sum(out[k] for k in DIMENSIONS) / len(DIMENSIONS)
        out.update(
            num_items=len(items), unparsed=sum(any(label not in p for label in DIMENSIONS.values()) for p in parsed)
        )
        return out
