"""DLC-Bench (Describe Anything): detailed region captions scored by a text-only judge LLM, as
NVlabs/describe-anything ``evaluation/eval_model_outputs.py`` scores them.

Data folder, as released (``nvidia/DLC-Bench``): ``qa.json`` (object key -> list of ``{"type":
"positive" | "negative", "question", "choices": [[text, score], ...]}``), ``class_names.json``
(object key -> class name), ``annotations.json`` (COCO ``images`` / ``annotations``, the keys are
annotation ids; needed to generate, not to score) and ``images/``.

Per object the judge first answers a recognition question built from the class name (article and
plural from ``inflect``; the prompt texts are in ``prompts/dlc_bench.json``), then every question of
``qa.json``. Each answer is read with the official rules (:func:`parse_choice`) and scores its
choice's value, 0 when no choice can be read. If the object is not recognised, each of its scores
``s`` becomes ``min(0, s)``. Per object: the mean of its positive scores, and of its negative scores
when it has any. ``positive`` = mean over all objects, ``negative`` = mean over objects with negative
questions, ``average`` = their mean; all x100.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import ask_all, user
from ..media import decode_segmentation, load_image, load_json
from ..registry import Benchmark, register
from ._prompts import load_prompt

QUESTION_TYPES = ("positive", "negative")
LABELS = "abcde"  # the official parser reads at most five options by letter
OFFICIAL = {
    "repo": "NVlabs/describe-anything",
    "path": "evaluation/eval_model_outputs.py",
    "commit": "153ad3d33c29324e9197f565547c6bc8500da02d",
}


def _prompts() -> dict:
    return load_prompt("dlc_bench")


@dataclass
class DLCBenchConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="detailed_caption", max_new_tokens=512)
    )
    judge: JudgeConfig | None = field(
        default_factory=lambda: JudgeConfig(
            model="meta-llama/Meta-Llama-3.1-8B-Instruct", temperature=0.0, max_tokens=300
        )
    )
    image_root: str | None = None  # image folder; None = <data>/images
    default_prediction: str | None = (
        None  # the official --default-prediction: used for objects without a prediction; None = error
    )


def is_plural(name: str) -> bool:
    """The official test: ``inflect`` can singularise it (``bus`` excepted)."""
    if name == "bus":
        return False
    return _engine().singular_noun(name) is not False


_ENGINE = None


def _engine():
    global _ENGINE
    if _ENGINE is None:
        try:
            import inflect
        except ImportError as err:
            raise ImportError(
                "DLC-Bench builds its recognition questions with inflect: pip install 'inflect<7.6' (the eval extra)"
            ) from err
        from importlib.metadata import version

        major_minor = tuple(int(p) for p in version("inflect").split(".")[:2] if p.isdigit())
        if major_minor >= (7, 6):
            warnings.warn(
                f"inflect {version('inflect')} reads some plurals unlike the release DAM's published DLC-Bench run "
                "used ('wine glass' is no longer plural), so a recognition question changes; install inflect<7.6 to "
                "reproduce it",
                stacklevel=2,
            )
        _ENGINE = inflect.engine()
    return _ENGINE


def recognition_question(class_name: str) -> dict:
    texts = _prompts()
    if is_plural(class_name):
        question = texts["recognition_plural"].format(name=class_name)
    else:
        question = texts["recognition_singular"].format(name_with_article=_engine().a(class_name))
    return {"question": question, "choices": [list(c) for c in texts["recognition_choices"]], "type": "recognition"}


def judge_prompt(caption: str, question: dict) -> str:
    lines = [question["question"]] + [f"{'ABCDE'[i]}. {text}" for i, (text, _) in enumerate(question["choices"])]
    return _prompts()["prompt"].format(pred_caption=caption, question_text_str="\n".join(lines))


def parse_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The option a judge answer names, by the official parser's rules, in order:

    1. the answer (lower-cased, stripped) equals an option, ``"<letter>. <option>"`` or the letter;
    2. exactly one option occurs in the answer;
    3. the answer starts with ``"<letter>."``;
    4. several options occur: the one found last, the longest among those found at that place;
    5. the answer occurs in options: the longest such option;
    6. the answer is one letter, or a letter then a newline.

    None when nothing applies. Where the official parser would crash or name an option that does not
    exist (an empty answer, a lone letter past the options), None as well: the answer scores 0.
    """
    pred = answer.strip().lower()
    if not pred:
        return None
    options = [c.strip().lower() for c in choices]
    found = []
    for i, option in enumerate(options):
        if pred in (option, f"{LABELS[i]}. {option}", LABELS[i]):
            return i
        if option in pred:
            found.append((i, pred.index(option), len(option)))

    def valid(i: int) -> int | None:
        return i if i < len(options) else None

    if len(found) == 1:
        return found[0][0]
    if len(pred) > 1 and pred[0] in LABELS and pred[1] == ".":
        return valid(LABELS.index(pred[0]))
    if found:
        last = max(f[1] for f in found)
        at_last = [f for f in found if f[1] == last]
        return max(at_last, key=lambda f: f[2])[0]
    containing = [(i, len(o)) for i, o in enumerate(options) if pred in o]
    if containing:
        return max(containing, key=lambda c: c[1])[0]
    if pred[0] in LABELS and (len(pred) == 1 or pred[1] == "\n"):
        return valid(LABELS.index(pred[0]))
    return None


def score_answers(questions: Sequence[dict], answers: Sequence[str]) -> dict:
    """One object's scores from its judge answers (``questions[0]`` is the recognition question)."""
    picks = [parse_choice(a, [c[0] for c in q["choices"]]) for q, a in zip(questions, answers)]
    rec_pick = picks[0]
    # an unreadable recognition answer crashes the official script; it counts here as not recognised
    recognized = rec_pick is not None and questions[0]["choices"][rec_pick][1] == "correct"
    out = {"recognized": recognized, "positive": [], "negative": [], "unparsed": sum(p is None for p in picks)}
    for q, pick in zip(questions[1:], picks[1:]):
        value = float(q["choices"][pick][1]) if pick is not None else 0.0
        out[q["type"]].append(value if recognized else min(0.0, value))
    return out


@register
class DLCBench(Benchmark):
    name = "dlc_bench"
    config_class = DLCBenchConfig
    needs_judge = True
    description = "DLC-Bench detailed captions, judged by multiple-choice QA: positive / negative / average"
    official = OFFICIAL
    options = {
        "judge.model=<other>": "another judge LLM than the script's Llama-3.1-8B-Instruct (scores are not comparable)",
        "default_prediction=<text>": (
            "the script's --default-prediction: objects without a prediction get this text instead of an error"
        ),
    }
    notes = (
        "The script's rules are followed exactly: the recognition question built from class_names.json with inflect, "
        "min(0, s) for objects not recognised, per-object means, negative averaged over objects with negatives. Where "
        "the script crashes (an empty judge answer, a lone letter past the options, an unreadable recognition answer), "
        "the answer scores 0 and an unreadable recognition answer counts as not recognised."
    )
    metrics = ("positive", "negative", "average")

    def read_items(self, data: str | Path) -> list[dict]:
        folder = Path(data)
        if not folder.is_dir():
            raise FileNotFoundError(f"DLC-Bench folder {folder} does not exist")
        qa_path, names_path, ann_path = folder / "qa.json", folder / "class_names.json", folder / "annotations.json"
        qa, names = load_json(qa_path), load_json(names_path)
        if not isinstance(qa, dict) or not qa:
            raise ValueError(f"{qa_path}: expected a non-empty mapping object key -> questions")
        if not isinstance(names, dict):
            raise ValueError(f"{names_path}: expected a mapping object key -> class name")
        anns, images = {}, {}
        if ann_path.is_file():
            coco = load_json(ann_path)
            if (
                not isinstance(coco, dict)
                or not isinstance(coco.get("annotations"), list)
                or not isinstance(coco.get("images"), list)
            ):
                raise ValueError(f"{ann_path}: expected a COCO JSON with 'images' and 'annotations' lists")
            images = {img.get("id"): img for img in coco["images"] if isinstance(img, dict)}
            anns = {str(a.get("id")): a for a in coco["annotations"] if isinstance(a, dict)}
        root = str(Path(self.config.image_root) if self.config.image_root else folder / "images")
        items = []
        for key, questions in qa.items():
            where = f"{qa_path}: object {key}"
            if not isinstance(questions, list) or not questions:
                raise ValueError(f"{where}: field 'questions' must be a non-empty list")
            for n, q in enumerate(questions):
                self._check_question(q, f"{where}, question {n}")
            if not any(q["type"] == "positive" for q in questions):
                raise ValueError(
                    f"{where}: field 'type': needs at least one positive question "
                    "(the positive score is a mean over them)"
                )
            name = names.get(key)
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{names_path}: object {key}: field 'class name' is missing or not a non-empty string")
            item = {
                "id": key,
                "class_name": name,
                "questions": questions,
                "root": root,
                "image": None,
                "segmentation": None,
            }
            ann = anns.get(key)
            if ann is not None:
                img = images.get(ann.get("image_id"))
                if img is None or "file_name" not in img:
                    raise ValueError(
                        f"{ann_path}: annotation {key}: field 'image_id' {ann.get('image_id')!r} "
                        "names no image with a file_name"
                    )
                if ann.get("segmentation") is None:
                    raise ValueError(f"{ann_path}: annotation {key}: field 'segmentation' is missing")
                item.update(image=img["file_name"], segmentation=ann["segmentation"])
            items.append(item)
        return items

    @staticmethod
    def _check_question(q, where: str) -> None:
        if not isinstance(q, dict):
            raise ValueError(f"{where}: expected an object with 'type', 'question' and 'choices'")
        if q.get("type") not in QUESTION_TYPES:
            raise ValueError(f"{where}: field 'type' must be one of {QUESTION_TYPES}, got {q.get('type')!r}")
        if not isinstance(q.get("question"), str):
            raise ValueError(f"{where}: field 'question' must be a string")
        ch = q.get("choices")
        ok = isinstance(ch, list) and 2 <= len(ch) <= len(LABELS)
        ok = ok and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], (int, float)) for c in ch
        )
        if not ok:
            raise ValueError(f"{where}: field 'choices' must be 2 to {len(LABELS)} [text, score] pairs, got {ch!r}")

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            if it["image"] is None:
                raise ValueError(
                    f"DLC-Bench object {it['id']}: not in annotations.json (generating needs its image and mask)"
                )
            image = load_image(it["root"], it["image"])
            mask = decode_segmentation(it["segmentation"], image.shape[0], image.shape[1], f"annotation {it['id']}")
            (text,) = generator.describe_regions(image, [{"mask": mask}])
            rows.append({"id": it["id"], "prediction": text})
        return rows

    def _captions(self, predictions: Sequence[dict], items: Sequence[dict]) -> list[str]:
        by_id = {str(r["id"]): r for r in predictions}
        out = []
        for it in items:
            row = by_id.get(str(it["id"]))
            text = row.get("prediction") if row is not None else None
            if row is not None and not isinstance(text, str):
                raise ValueError(f"dlc_bench: prediction {it['id']!r}: field 'prediction' must be a string")
            if text is None or text.startswith("Error:"):
                if self.config.default_prediction is None:
                    why = "has no prediction" if text is None else "has an error prediction"
                    raise ValueError(
                        f"dlc_bench: object {it['id']!r} {why} (set default_prediction to score it with a fixed text)"
                    )
                text = self.config.default_prediction
            out.append(text)
        return out

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("dlc_bench is scored by a judge LLM: give judge settings or a judge object")
        captions = self._captions(predictions, items)
        per_object = [[recognition_question(it["class_name"]), *it["questions"]] for it in items]
        prompts = [user(judge_prompt(cap, q)) for cap, qs in zip(captions, per_object) for q in qs]
        extra = {k: v for k, v in _prompts()["request"].items() if k not in ("temperature", "max_tokens")}
        answers = ask_all(judge, prompts, self.config.judge, extra=extra)
        pos, neg, unparsed, unrecognized, start = [], [], 0, 0, 0
        for qs in per_object:
            got = score_answers(qs, answers[start : start + len(qs)])
            start += len(qs)
            pos.append(sum(got["positive"]) / len(got["positive"]))
            if got["negative"]:
                neg.append(sum(got["negative"]) / len(got["negative"]))
            unparsed += got["unparsed"]
            unrecognized += not got["recognized"]
        p = sum(pos) / len(pos)
        n = sum(neg) / len(neg) if neg else 0.0
        return {
            "positive": 100 * p,
            "negative": 100 * n,
            "average": 100 * (p + n) / 2,
            "num_items": len(items),
            "unrecognized": unrecognized,
            "unparsed_answers": unparsed,
        }
