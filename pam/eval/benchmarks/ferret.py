"""Ferret-Bench referring reasoning, scored by a judge as Ferret/LLaVA-Bench score it.

Data folder (Ferret's ``ferret_gpt4_data/refer_reason``): ``question.jsonl`` (``{"question_id",
"image", "text", "bbox": [x1, y1, x2, y2] pixels or "segmentation"}``; region tags such as
``<region0>`` / ``[region0]`` in ``text`` are replaced by ``object_word``), ``answer.jsonl``
(``{"question_id", "text"}``: the reference answers) and optionally ``context.jsonl``
(``{"question_id", "context"}``: the image description the judge reads). Images in ``image_root``
(default: ``images`` beside the files, else the folder).

The judge scores the reference answer (assistant 1) and PAM's (assistant 2) from 1 to 10; the
first line of its answer holds the two scores. Score: ``ratio`` = 100 x sum(PAM) / sum(reference)
over answers parsed; ``unparsed`` counts the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import ask_all
from ..media import decode_segmentation, load_image
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._common import media_root

_TAG = re.compile(r"<region\d*>|\[region\d*\]")
_TWO = re.compile(r"^\s*(\d+(?:\.\d+)?)[\s,]+(\d+(?:\.\d+)?)")

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
REVIEW = """[Context]
{context}

[Question]
{question}

[Assistant 1]
{answer1}
[End of Assistant 1]

[Assistant 2]
{answer2}
[End of Assistant 2]

[System]
We would like your feedback on the two AI assistants' answers to the question about the region of the image described in the context.
Rate the helpfulness, relevance, accuracy and level of detail of each answer. Each assistant gets an overall score from 1 to 10; higher is better.
Output a first line with only the two scores, for Assistant 1 and Assistant 2, separated by a space. Then explain your evaluation, avoiding bias from the order of the answers."""


@dataclass
class FerretConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task=None, max_new_tokens=256))
    judge: JudgeConfig | None = field(default_factory=lambda: JudgeConfig(model="gpt-4", max_tokens=512))
    image_root: str | None = None  # image folder; None = <data>/images, else the data folder
    object_word: str = "the region"  # replaces region tags in questions


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"Ferret-Bench file {path} does not exist")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: invalid JSON ({err.msg})") from err
    return rows


def parse_pair(answer: str) -> tuple[float, float] | None:
    m = _TWO.match(answer.strip().splitlines()[0] if answer.strip() else "")
    return (float(m.group(1)), float(m.group(2))) if m else None


@register
class Ferret(Benchmark):
    name = "ferret"
    config_class = FerretConfig
    needs_judge = True
    description = "Ferret-Bench referring reasoning, judged: ratio to the reference answers x100"

    def read_items(self, data: str | Path) -> list[dict]:
        folder = Path(data)
        questions = _jsonl(folder / "question.jsonl")
        answers = {a["question_id"]: a["text"] for a in _jsonl(folder / "answer.jsonl")}
        ctx_path = folder / "context.jsonl"
        contexts = {c["question_id"]: c.get("context", "") for c in _jsonl(ctx_path)} if ctx_path.is_file() else {}
        root = str(media_root(folder / "question.jsonl", self.config.image_root, "images"))
        items = []
        for n, q in enumerate(questions, 1):
            where = f"{folder / 'question.jsonl'}:{n}"
            for key in ("question_id", "image", "text"):
                if key not in q:
                    raise ValueError(f"{where}: missing {key!r}")
            if q.get("bbox") is None and q.get("segmentation") is None:
                raise ValueError(f"{where}: needs a 'bbox' [x1, y1, x2, y2] or a 'segmentation'")
            if q["question_id"] not in answers:
                raise ValueError(f"{where}: question {q['question_id']!r} has no reference in answer.jsonl")
            items.append({"id": q["question_id"], "root": root, "image": q["image"], "bbox": q.get("bbox"), "segmentation": q.get("segmentation"),
                          "question": q["text"], "text": _TAG.sub(self.config.object_word, q["text"]), "reference": answers[q["question_id"]],
                          "context": contexts.get(q["question_id"], "")})
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            image = load_image(it["root"], it["image"])
            if it["segmentation"] is not None:
                region = {"mask": decode_segmentation(it["segmentation"], image.shape[0], image.shape[1], f"question {it['id']}")}
            else:
                region = {"box": [float(v) for v in it["bbox"]]}
            (text,) = generator.describe_regions(image, [region], text=it["text"])
            rows.append({"id": it["id"], "prediction": text})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("ferret is scored by a judge LLM: give judge settings or a judge object")
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        prompts = [
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": REVIEW.format(context=it["context"], question=it["question"], answer1=it["reference"], answer2=r.get("prediction", ""))}]
            for it, r in zip(items, rows)
        ]
        pairs = [parse_pair(a) for a in ask_all(judge, prompts, self.config.judge)]
        good = [p for p in pairs if p is not None]
        ref = sum(p[0] for p in good)
        if not good or ref <= 0:
            raise ValueError("ferret: no judge answer could be parsed into two scores")
        return {"ratio": 100 * sum(p[1] for p in good) / ref, "pam_score": sum(p[1] for p in good) / len(good), "reference_score": ref / len(good), "num_items": len(items), "unparsed": len(pairs) - len(good)}
