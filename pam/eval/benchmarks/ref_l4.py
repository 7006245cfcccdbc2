"""Ref-L4 as a region-captioning benchmark: each referring expression is the reference caption.

Data: the official ``ref-l4-val.parquet`` / ``ref-l4-test.parquet`` (JierunChen/Ref-L4 on the
Hugging Face hub; reading parquet needs ``pyarrow``), or the same rows as JSON / JSON lines. Row
fields used: ``id`` (older releases: ``ann_id``), ``file_name``, ``bbox`` (xywh), ``caption``. Images
live in ``image_root`` (default: an ``images`` folder beside the file, else the file's folder).

Ref-L4's own ``evaluation.py`` scores grounding, not captions. The captioning protocol here is the
one of the figures PAM's paper sets beside DAM's: the rows whose ``file_name`` contains
``objects365`` (``rows: all`` keeps every row), scored x100 with ROUGE-L, METEOR and CIDEr.
``protocol: clair`` scores instead as VideoRefer's ``infer_refl4.py`` + ``clair/clair.py``: a judge
(through ``pam.clients``) rates from 0 to 100 how well the answer matches the expression, and
``clair`` is the mean rating.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import GenerationConfig
from ..judge import ask_all, user
from ..media import load_json
from ..predictions import match_predictions
from ..registry import register
from ._coco_captions import COCORegionCaptions, RegionCaptionConfig
from ._common import describe_image_items, media_root
from ._prompts import load_prompt

ROWS = ("objects365", "all")
PROTOCOLS = ("captions", "clair")
_NUMBER = re.compile(r"\d*\.?\d+")


@dataclass
class RefL4Config(RegionCaptionConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="detailed_caption", max_new_tokens=256, batch_size=4)
    )
    metrics: tuple[str, ...] = ("ROUGE_L", "METEOR", "CIDEr")
    # rows and protocol: see the module docstring
    rows: str = "objects365"  # or "all"
    protocol: str = "captions"  # or "clair" (needs judge settings)
    # free-text question instead of generation.task ("<region>" reads as object_word), e.g. VideoRefer's
    question: str | None = None
    object_word: str = "the region"  # what "<region>" in `question` becomes

    def validate(self) -> None:
        super().validate()
        if self.rows not in ROWS:
            raise ValueError(f"ref_l4.rows: expected one of {ROWS}, got {self.rows!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"ref_l4.protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as err:
            raise ImportError(f"{path}: reading Ref-L4's parquet files needs pyarrow (pip install pyarrow)") from err
        return [
            {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{n}: invalid JSON ({err.msg})") from err
        return rows
    rows = load_json(path)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of Ref-L4 rows")
    return rows


def clair_prompt(candidates: Sequence[str], targets: Sequence[str]) -> str:
    return load_prompt("clair")["prompt"].format(
        candidate_statements="".join(f"- {c}\n" for c in candidates),
        target_statements="".join(f"- {t}\n" for t in targets),
    )


def parse_clair(response: str) -> float | None:
    """The rating (0..100) in a CLAIR answer, as clair.py reads it: the first ``{..}`` as JSON with a
    ``score``; else the first number in the text, x100 when below 1. None when there is no number."""
    try:
        return float(json.loads("{" + response.split("{")[1].split("}")[0] + "}")["score"])
    except (IndexError, ValueError, KeyError, TypeError):
        pass
    numbers = _NUMBER.findall(response)
    if not numbers:
        return None
    value = float(numbers[0])
    return value * 100 if value < 1 else value


@register
class RefL4(COCORegionCaptions):
    name = "ref_l4"
    config_class = RefL4Config
    description = "Ref-L4 referring expressions as captions: ROUGE-L / METEOR / CIDEr"
    paper = {"rouge_l": 31.3, "meteor": 17.2, "cider": 59.7}  # PAM-3B; DAM-8B, from DAM's paper: 37.1 / 19.4 / 70.0
    official = {
        "repo": "DAMO-NLP-SG/VideoRefer",
        "path": (
            "videorefer_videollama3/evaluation/infer_refl4.py (rows), "
            "videorefer_videollama3/evaluation/clair/clair.py (protocol=clair)"
        ),
        "commit": "cbd4207bf12e9d2f67ac71e54a260dd96697a83a",
    }
    options = {
        "rows=all": "every row of the file instead of the objects365 rows",
        "protocol=clair": "VideoRefer's CLAIR judge rating (0-100) instead of ROUGE-L / METEOR / CIDEr",
        "question=Please describe <region> in brief.": "VideoRefer's question instead of PAM's detailed-caption task",
    }
    notes = (
        "Ref-L4's evaluation.py scores grounding only; no official captioning scorer exists. The row filter is "
        "VideoRefer's (file_name contains objects365). clair.py passes the reference caption as a string where a list "
        "is expected, so its reference set is one line per character; the harness sends the caption as one line. "
        "clair.py retries an unreadable answer up to five times; the harness asks once (answers are cached) and scores "
        "an answer without a number 0, counted in clair_unparsed."
    )
    metrics = ("rouge_l", "meteor", "cider")

    def __init__(self, config=None, *, overrides=None):
        super().__init__(config, overrides=overrides)
        self.needs_judge = self.config.protocol == "clair"

    def read_items(self, data: str | Path) -> list[dict]:
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"Ref-L4 file {path} does not exist")
        root = str(media_root(path, self.config.image_root, "images"))
        items, seen = [], set()
        for k, row in enumerate(read_rows(path)):
            where = f"{path}: row {k}"
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected an object")
            for key in ("file_name", "bbox", "caption"):
                if key not in row:
                    raise ValueError(f"{where}: field {key!r} is missing")
            if not isinstance(row["file_name"], str):
                raise ValueError(f"{where}: field 'file_name' has a bad value {row['file_name']!r}")
            if self.config.rows == "objects365" and "objects365" not in row["file_name"]:
                continue
            if not isinstance(row["caption"], str) or not row["caption"].strip():
                raise ValueError(f"{where}: field 'caption' must be a non-empty string")
            box = row["bbox"]
            if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
                raise ValueError(f"{where}: field 'bbox' must be 4 numbers [x, y, w, h], got {box!r}")
            key = "id" if "id" in row else "ann_id" if "ann_id" in row else None
            if key is None:
                raise ValueError(f"{where}: field 'id' is missing (older releases: 'ann_id')")
            item_id = row[key]
            if item_id in seen:
                raise ValueError(f"{where}: field {key!r} {item_id!r} repeats")
            seen.add(item_id)
            items.append(
                {
                    "id": item_id,
                    "root": root,
                    "image": row["file_name"],
                    "bbox": list(box),
                    "segmentation": None,
                    "references": [row["caption"]],
                }
            )
        if not items:
            which = (
                "rows whose file_name contains objects365 (rows=all keeps every row)"
                if self.config.rows == "objects365"
                else "rows"
            )
            raise ValueError(f"{path}: no {which}")
        items.sort(key=lambda it: it["image"])
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        text = self.config.question.replace("<region>", self.config.object_word) if self.config.question else None
        texts = describe_image_items(items, generator, use_mask=self.config.use_mask, text=text)
        return [{"id": it["id"], "prediction": t} for it, t in zip(items, texts)]

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if self.config.protocol == "captions":
            return super().score(predictions, items, judge)
        if judge is None:
            raise ValueError(
                "ref_l4 with protocol=clair is scored by a judge LLM: give judge settings (--judge-url/--judge-model)"
            )
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        prompts = []
        for it, row in zip(items, rows):
            if not isinstance(row.get("prediction"), str):
                raise ValueError(f"ref_l4: prediction {it['id']!r}: field 'prediction' must be a string")
            prompts.append(user(clair_prompt([row["prediction"]], it["references"])))
        ratings = [parse_clair(a) for a in ask_all(judge, prompts, self.config.judge)]
        return {
            "clair": sum(r or 0.0 for r in ratings) / len(ratings),
            "num_items": len(items),
            "clair_unparsed": sum(r is None for r in ratings),
        }
