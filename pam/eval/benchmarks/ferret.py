"""Ferret-Bench referring reasoning, judged as apple/ml-ferret's ``eval_gpt_review_3newclass.py``
and ``summarize_gpt_review.py`` judge and summarise it.

Two layouts are read (``layout: auto`` tells them apart):

- ``ferret``: the folder ``ferret/eval/ferret_gpt4_data/refer_reason/`` with ``question.jsonl``
  (``{question_id, image, category, text}``; the region is the one normalised ``[x0, y0, x1, y1]`` box
  written inside ``text``), ``answer.jsonl`` (the reference answers, ``{question_id, text}``) and
  ``context.jsonl`` (``{image, text}``, joined to questions by ``image``).
- ``osprey``: Osprey's ``box_refer_reason.json`` (a JSON list of ``{question_id, image, category,
  text, annotation: {bbox: xywh pixels, segmentation}}`` with ``<region>`` in ``text``), with Ferret's
  ``answer.jsonl`` and ``context.jsonl`` in the same folder (and its ``question.jsonl``, when present,
  for the question the judge reads).

The judge (``prompts/ferret_refer_reason.json``: the script's system text and content, ``rule.json``'s
``refer_reason`` rule, ``gpt-4-0314``, temperature 0.2, 1024 tokens) scores the reference (assistant 1)
and PAM's answer (assistant 2), after `` [..]`` boxes are removed from PAM's answer. Each review's first
line, commas read as spaces, must hold exactly two numbers, else it counts as ``[-1, -1]``. Both means
are rounded to 3 places; ``ratio`` = ``round(mean2 / mean1 * 100, 1)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import ask_all
from ..media import decode_segmentation, load_image, load_json, xywh_to_xyxy
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._prompts import load_prompt

LAYOUTS = ("auto", "ferret", "osprey")
_BOX_TEXT = re.compile(r"\[([^\[\]]*)\]")
_ANSWER_BOX = re.compile(r"\[.*?\]")
_REGION_TAG = re.compile(r"<region>")


def _rule() -> dict:
    return load_prompt("ferret_refer_reason")


@dataclass
class FerretConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task=None, max_new_tokens=256))
    judge: JudgeConfig | None = field(
        default_factory=lambda: JudgeConfig(model="gpt-4-0314", temperature=0.2, max_tokens=1024)
    )
    layout: str = "auto"  # "ferret" (question.jsonl), "osprey" (box_refer_reason.json) or "auto" (from the path)
    image_root: str | None = None  # COCO val2017 image folder; None = <data>/images, else the data folder
    object_word: str = "the region"  # replaces the region (box text or <region>) in the question PAM reads

    def validate(self) -> None:
        super().validate()
        if self.layout not in LAYOUTS:
            raise ValueError(f"ferret.layout: expected one of {LAYOUTS}, got {self.layout!r}")


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"Ferret-Bench file {path} does not exist")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: invalid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
            rows.append((n, row))
    return rows


def _need(row: dict, key: str, kind: type | tuple, where: str):
    if key not in row:
        raise ValueError(f"{where}: field {key!r} is missing")
    if not isinstance(row[key], kind) or isinstance(row[key], bool):
        raise ValueError(f"{where}: field {key!r} has a bad value {row[key]!r}")
    return row[key]


def box_in_text(text: str, where: str) -> list[float]:
    """The one normalised ``[x0, y0, x1, y1]`` box written in a Ferret question."""
    boxes = _BOX_TEXT.findall(text)
    if len(boxes) != 1:
        raise ValueError(f"{where}: field 'text' must hold exactly one [x0, y0, x1, y1] box, found {len(boxes)}")
    try:
        box = [float(v) for v in boxes[0].split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not all(0.0 <= v <= 1.0 for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(
            f"{where}: field 'text' has a bad box [{boxes[0]}] (want 4 numbers in [0, 1], x0 < x1, y0 < y1)"
        )
    return box


def remove_boxes(answer: str) -> str:
    """The script's clean-up of the model's answer: every ``" [..]"`` is removed."""
    for match in _ANSWER_BOX.findall(answer):
        answer = answer.replace(" " + match, "")
    return answer


def parse_score(review: str) -> list[float]:
    """The script's ``parse_score``: the first line, ``,`` read as a space, exactly two numbers; else ``[-1, -1]``."""
    fields = review.split("\n")[0].replace(",", " ").split(" ")
    if len(fields) != 2:
        return [-1.0, -1.0]
    try:
        return [float(fields[0]), float(fields[1])]
    except ValueError:
        return [-1.0, -1.0]


def review_messages(context: str, question: str, reference: str, answer: str) -> list[dict]:
    rule = _rule()
    content = rule["content"].format(
        context=context, question=question, role=rule["role"], answer1=reference, answer2=answer, prompt=rule["prompt"]
    )
    return [{"role": "system", "content": rule["system"]}, {"role": "user", "content": content}]


@register
class Ferret(Benchmark):
    name = "ferret"
    config_class = FerretConfig
    needs_judge = True
    description = "Ferret-Bench referring reasoning, judged: ratio to the reference answers x100"
    official = {
        "repo": "apple/ml-ferret",
        "path": (
            "ferret/eval/eval_gpt_review_3newclass.py, ferret/eval/summarize_gpt_review.py, "
            "ferret/eval/ferret_gpt4_data/rule.json"
        ),
        "commit": "3c9e5c93c2c3048638f73848343d03f37824eb2b",
    }
    options = {
        "layout=osprey": (
            "reads Osprey's box_refer_reason.json (CircleRadon/Osprey osprey/eval/ferret-bench/) instead of "
            "question.jsonl"
        ),
        "judge.model=<other>": "another judge than the retired gpt-4-0314 (ratios are not comparable)",
    }
    notes = (
        "The script pairs questions, references and answers by line order; here they are paired by question_id, so a "
        "prediction file in any order scores the same. Its context header is sent as written ('[Context]\\' then the "
        "context, no newline). Reviews that do not parse count as [-1, -1] in both means, as in the script."
    )
    metrics = ("ratio",)

    def _layout(self, path: Path) -> tuple[str, Path]:
        layout = self.config.layout
        if layout == "auto":
            if path.is_file():
                layout = "osprey" if path.suffix == ".json" else "ferret"
            elif (path / "question.jsonl").is_file():
                layout = "ferret"
            elif (path / "box_refer_reason.json").is_file():
                layout = "osprey"
            else:
                raise FileNotFoundError(f"{path}: no Ferret-Bench question.jsonl nor Osprey box_refer_reason.json")
        if layout == "ferret":
            return layout, path if path.is_dir() else path.parent
        return layout, path if path.is_file() else path / "box_refer_reason.json"

    def read_items(self, data: str | Path) -> list[dict]:
        layout, where = self._layout(Path(data))
        folder = where if where.is_dir() else where.parent
        answers = {}
        for n, row in _jsonl(folder / "answer.jsonl"):
            at = f"{folder / 'answer.jsonl'}:{n}"
            answers[_need(row, "question_id", (int, str), at)] = _need(row, "text", str, at)
        contexts = {}
        for n, row in _jsonl(folder / "context.jsonl"):
            at = f"{folder / 'context.jsonl'}:{n}"
            contexts[_need(row, "image", str, at)] = _need(row, "text", str, at)
        root = self.config.image_root or str(folder / "images" if (folder / "images").is_dir() else folder)
        ferret_questions = {}
        if (folder / "question.jsonl").is_file():
            ferret_questions = self._ferret_questions(folder / "question.jsonl")
        rows = ferret_questions.values() if layout == "ferret" else self._osprey_questions(where, ferret_questions)
        items = []
        for q in rows:
            if q["id"] not in answers:
                raise ValueError(
                    f"{q['where']}: field 'question_id' {q['id']!r} has no reference answer in "
                    f"{folder / 'answer.jsonl'}"
                )
            if q["image"] not in contexts:
                raise ValueError(
                    f"{q['where']}: field 'image' {q['image']!r} has no context in {folder / 'context.jsonl'}"
                )
            items.append(
                {
                    **{k: v for k, v in q.items() if k != "where"},
                    "root": root,
                    "reference": answers[q["id"]],
                    "context": contexts[q["image"]],
                }
            )
        if not items:
            raise ValueError(f"{where}: no questions")
        return items

    def _ferret_questions(self, path: Path) -> dict:
        out = {}
        for n, row in _jsonl(path):
            at = f"{path}:{n}"
            qid = _need(row, "question_id", (int, str), at)
            text = _need(row, "text", str, at)
            category = _need(row, "category", str, at)
            if category != "refer_reason":
                raise ValueError(
                    f"{at}: field 'category' is {category!r}; this benchmark scores refer_reason questions"
                )
            box = box_in_text(text, at)
            out[qid] = {
                "id": qid,
                "where": at,
                "image": _need(row, "image", str, at),
                "question": text,
                "box_norm": box,
                "bbox": None,
                "segmentation": None,
                "text": _BOX_TEXT.sub(self.config.object_word, text),
            }
        return out

    def _osprey_questions(self, path: Path, ferret_questions: dict) -> list[dict]:
        entries = load_json(path)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of questions (Osprey's box_refer_reason.json)")
        out = []
        for k, row in enumerate(entries):
            at = f"{path}: entry {k}"
            if not isinstance(row, dict):
                raise ValueError(f"{at}: expected a JSON object")
            qid = _need(row, "question_id", (int, str), at)
            text = _need(row, "text", str, at)
            ann = _need(row, "annotation", dict, at)
            bbox = _need(ann, "bbox", list, f"{at}, annotation")
            xywh_to_xyxy(bbox, f"{at}: annotation field 'bbox'")
            seg = ann.get("segmentation")
            if seg is not None and not isinstance(seg, (list, dict)):
                raise ValueError(f"{at}: annotation field 'segmentation' has a bad value {seg!r}")
            question = ferret_questions[qid]["question"] if qid in ferret_questions else text
            out.append(
                {
                    "id": qid,
                    "where": at,
                    "image": _need(row, "image", str, at),
                    "question": question,
                    "box_norm": None,
                    "bbox": bbox,
                    "segmentation": seg,
                    "text": _REGION_TAG.sub(self.config.object_word, text),
                }
            )
        return out

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            image = load_image(it["root"], it["image"])
            h, w = image.shape[:2]
            if it["segmentation"] is not None:
                region = {"mask": decode_segmentation(it["segmentation"], h, w, f"question {it['id']}")}
            elif it["bbox"] is not None:
                region = {"box": xywh_to_xyxy(it["bbox"], f"question {it['id']}")}
            else:
                x0, y0, x1, y1 = it["box_norm"]
                region = {"box": [x0 * w, y0 * h, x1 * w, y1 * h]}
            (text,) = generator.describe_regions(image, [region], text=it["text"])
            rows.append({"id": it["id"], "prediction": text})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("ferret is scored by a judge LLM: give judge settings or a judge object")
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        prompts = []
        for it, r in zip(items, rows):
            if not isinstance(r.get("prediction"), str):
                raise ValueError(f"ferret: prediction {it['id']!r}: field 'prediction' must be a string")
            prompts.append(
                review_messages(it["context"], it["question"], it["reference"], remove_boxes(r["prediction"]))
            )
        pairs = [parse_score(a) for a in ask_all(judge, prompts, self.config.judge)]
        mean1 = round(sum(p[0] for p in pairs) / len(pairs), 3)
        mean2 = round(sum(p[1] for p in pairs) / len(pairs), 3)
        if mean1 == 0:
            raise ValueError("ferret: the reference answers' mean score is 0, so the ratio is undefined")
        return {
            "ratio": round(mean2 / mean1 * 100, 1),
            "pam_score": mean2,
            "reference_score": mean1,
            "num_items": len(items),
            "unparsed": sum(p == [-1.0, -1.0] for p in pairs),
        }
