"""Ref-L4 as a region-captioning benchmark: each referring expression is the reference caption.

Data: the official ``ref-l4-val.parquet`` / ``ref-l4-test.parquet`` (reading parquet needs
``pyarrow``), or the same rows as JSON / JSON lines. Row fields used: ``id`` (else the row
number), ``file_name``, ``bbox`` (xywh), ``caption``. Images live in ``image_root`` (default: an
``images`` folder beside the file, else the file's folder). Scores x100: ROUGE-L, METEOR, CIDEr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import GenerationConfig
from ..media import load_json
from ..registry import register
from ._coco_captions import COCORegionCaptions, RegionCaptionConfig
from ._common import media_root


@dataclass
class RefL4Config(RegionCaptionConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task="detailed_caption", max_new_tokens=256, batch_size=4))
    metrics: tuple[str, ...] = ("ROUGE_L", "METEOR", "CIDEr")


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as err:
            raise ImportError(f"{path}: reading Ref-L4's parquet files needs pyarrow (pip install pyarrow)") from err
        return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    if path.suffix == ".jsonl":
        import json

        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = load_json(path)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of Ref-L4 rows")
    return rows


@register
class RefL4(COCORegionCaptions):
    name = "ref_l4"
    config_class = RefL4Config
    description = "Ref-L4 referring expressions as captions: ROUGE-L / METEOR / CIDEr"

    def read_items(self, data: str | Path) -> list[dict]:
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"Ref-L4 file {path} does not exist")
        root = str(media_root(path, self.config.image_root, "images"))
        items, seen = [], set()
        for k, row in enumerate(read_rows(path)):
            where = f"{path}: row {k}"
            for key in ("file_name", "bbox", "caption"):
                if key not in row:
                    raise ValueError(f"{where}: missing {key!r}")
            if not isinstance(row["caption"], str) or not row["caption"].strip():
                raise ValueError(f"{where}: 'caption' must be a non-empty string")
            item_id = row.get("id", k)
            if item_id in seen:
                raise ValueError(f"{where}: duplicate id {item_id!r}")
            seen.add(item_id)
            items.append({"id": item_id, "root": root, "image": row["file_name"], "bbox": list(row["bbox"]), "segmentation": None, "references": [row["caption"]]})
        if not items:
            raise ValueError(f"{path}: no rows")
        items.sort(key=lambda it: it["image"])
        return items
