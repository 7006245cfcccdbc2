"""DLC-Bench (Describe Anything): detailed region captions scored by a text-only judge LLM.

Data folder: ``annotations.json`` (COCO: ``images`` and ``annotations`` with RLE ``segmentation``),
``class_names.json`` (annotation id -> class name, used in the judge prompt's context), ``qa.json``
(annotation id -> list of ``{"type": "recognition" | "positive" | "negative", "question": str,
"choices": [[text, score], ...]}``) and the images in ``images/`` (or ``image_root``).

PAM describes each annotated object (``detailed_caption`` with its mask). The judge sees only the
caption and answers each multiple-choice question with a letter. Per object the recognition
question comes first: a choice scoring 0 or less (the "No"), or an unparsed answer, clips every
positive and negative score of that object to 0 and its other questions are not asked. Otherwise
a question scores its chosen choice's value (positive choices in {-1, 0, 0.5, 1}, negative in
{1, -1, 0}); an unparsed answer scores 0. ``positive`` = mean over all positive questions,
``negative`` = mean over all negative questions, ``average`` = (positive + negative) / 2, all x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import LETTERS, ask_all, parse_choice, user
from ..media import decode_segmentation, load_image, load_json
from ..predictions import match_predictions
from ..registry import Benchmark, register

QUESTION_TYPES = ("recognition", "positive", "negative")

JUDGE_PROMPT = """Answer the multiple-choice question using only the text description of an object in an image.
Rules: give no reasoning and no corrections; output exactly one of the choices, as its letter; do not repeat the question. The description need not match a choice word for word: pick the closest choice.

Description:
{caption}

Question:
{question}
{choices}

Answer with the letter only."""


@dataclass
class DLCBenchConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task="detailed_caption", max_new_tokens=512))
    judge: JudgeConfig | None = field(default_factory=lambda: JudgeConfig(model="meta-llama/Llama-3.1-8B-Instruct", max_tokens=8))
    image_root: str | None = None  # image folder; None = <data>/images


def question_prompt(caption: str, question: dict) -> list[dict]:
    choices = "\n".join(f"{LETTERS[i]}. {c[0]}" for i, c in enumerate(question["choices"]))
    return user(JUDGE_PROMPT.format(caption=caption, question=question["question"], choices=choices))


def score_object(caption: str, questions: list[dict], judge, judge_config: JudgeConfig | None) -> dict:
    """Per-question scores of one object: ``{"recognized", "positive": [...], "negative": [...], "unparsed"}``."""
    out = {"recognized": True, "positive": [], "negative": [], "unparsed": 0}
    rec = [q for q in questions if q["type"] == "recognition"]
    rest = [q for q in questions if q["type"] != "recognition"]
    for q in rec:
        (answer,) = ask_all(judge, [question_prompt(caption, q)], judge_config)
        idx = parse_choice(answer, len(q["choices"]), [c[0] for c in q["choices"]])
        out["unparsed"] += idx is None
        if idx is None or q["choices"][idx][1] <= 0:
            out["recognized"] = False
    if not out["recognized"]:
        for q in rest:
            out[q["type"]].append(0.0)
        return out
    answers = ask_all(judge, [question_prompt(caption, q) for q in rest], judge_config)
    for q, answer in zip(rest, answers):
        idx = parse_choice(answer, len(q["choices"]), [c[0] for c in q["choices"]])
        out["unparsed"] += idx is None
        out[q["type"]].append(0.0 if idx is None else float(q["choices"][idx][1]))
    return out


@register
class DLCBench(Benchmark):
    name = "dlc_bench"
    config_class = DLCBenchConfig
    needs_judge = True
    description = "DLC-Bench detailed captions, judged by multiple-choice QA: positive / negative / average"

    def read_items(self, data: str | Path) -> list[dict]:
        folder = Path(data)
        if not folder.is_dir():
            raise FileNotFoundError(f"DLC-Bench folder {folder} does not exist")
        coco = load_json(folder / "annotations.json")
        qa = load_json(folder / "qa.json")
        names_path = folder / "class_names.json"
        names = load_json(names_path) if names_path.is_file() else {}
        root = str(Path(self.config.image_root) if self.config.image_root else folder / "images")
        images = {img["id"]: img for img in coco.get("images", [])}
        anns = {str(a["id"]): a for a in coco.get("annotations", [])}
        if not isinstance(qa, dict) or not qa:
            raise ValueError(f"{folder / 'qa.json'}: expected a non-empty mapping annotation id -> questions")
        items = []
        for ann_id, questions in qa.items():
            where = f"{folder / 'qa.json'}: annotation {ann_id}"
            if ann_id not in anns:
                raise ValueError(f"{where}: not in annotations.json")
            if not isinstance(questions, list) or not questions:
                raise ValueError(f"{where}: needs a list of questions")
            for n, q in enumerate(questions):
                if not isinstance(q, dict) or q.get("type") not in QUESTION_TYPES or not isinstance(q.get("question"), str):
                    raise ValueError(f"{where}, question {n}: needs 'type' in {QUESTION_TYPES} and a 'question' string")
                ch = q.get("choices")
                if not isinstance(ch, list) or len(ch) < 2 or not all(isinstance(c, list) and len(c) == 2 and isinstance(c[1], (int, float)) for c in ch):
                    raise ValueError(f"{where}, question {n}: 'choices' must be [[text, score], ...] (at least 2)")
            ann = anns[ann_id]
            if ann.get("image_id") not in images:
                raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not in annotations.json images")
            img = images[ann["image_id"]]
            items.append({"id": ann_id, "root": root, "image": img["file_name"], "segmentation": ann["segmentation"], "class_name": names.get(ann_id), "questions": questions})
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            image = load_image(it["root"], it["image"])
            mask = decode_segmentation(it["segmentation"], image.shape[0], image.shape[1], f"annotation {it['id']}")
            (text,) = generator.describe_regions(image, [{"mask": mask}])
            rows.append({"id": it["id"], "prediction": text})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("dlc_bench is scored by a judge LLM: give judge settings or a judge object")
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        pos, neg, unparsed, unrecognized = [], [], 0, 0
        for it, row in zip(items, rows):
            if not isinstance(row.get("prediction"), str):
                raise ValueError(f"dlc_bench: prediction {it['id']!r} has no 'prediction' string")
            got = score_object(row["prediction"], it["questions"], judge, self.config.judge)
            pos += got["positive"]
            neg += got["negative"]
            unparsed += got["unparsed"]
            unrecognized += not got["recognized"]
        p = sum(pos) / len(pos) if pos else 0.0
        n = sum(neg) / len(neg) if neg else 0.0
        return {"positive": 100 * p, "negative": 100 * n, "average": 100 * (p + n) / 2, "num_items": len(items), "unrecognized": unrecognized, "unparsed_answers": unparsed}
