"""HC-STVG video region captions (METEOR, CIDEr x100, PTB-tokenised).

Data: the official annotation JSON, a mapping ``video name -> {"English" (or "caption"): str,
"st_frame": int, "ed_frame": int, "bbox": [[x, y, w, h], ...]}`` with one box per frame from
``st_frame`` on. Videos (mp4 files or frame folders named like the keys, extension optional) live
in ``video_root`` (default: a ``videos`` folder beside the file, else the file's folder). PAM
captions the person boxed on ``st_frame`` over frames ``st_frame..ed_frame``: SAM 2 tracks
``generation.track_frames`` of them (0 = all; ``st_frame`` first), the LLM sees the model's
``video_num_frames`` of those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig
from ..media import load_clip, load_json, xywh_to_xyxy
from ..registry import Benchmark, register
from ._common import media_root, score_captions


@dataclass
class HCSTVGConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=128))
    video_root: str | None = None  # folder of the videos; None = <file folder>/videos, else the file's folder


def find_video(root: Path, name: str) -> Path:
    for candidate in (root / name, root / Path(name).stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"video {name!r} is not in {root} (as a file or a frame folder)")


@register
class HCSTVG(Benchmark):
    name = "hc_stvg"
    paper = {"meteor": 23.3, "cider": 70.3}  # PAM-3B, paper tables
    config_class = HCSTVGConfig
    description = "HC-STVG video region captions: METEOR / CIDEr"

    def read_items(self, data: str | Path) -> list[dict]:
        doc = load_json(data)
        if not isinstance(doc, dict) or not doc:
            raise ValueError(f"{data}: expected a non-empty JSON object keyed by video name (HC-STVG format)")
        root = str(media_root(data, self.config.video_root, "videos"))
        items = []
        for name, ann in doc.items():
            where = f"{data}: video {name!r}"
            caption = ann.get("English", ann.get("caption")) if isinstance(ann, dict) else None
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"{where}: needs an 'English' (or 'caption') string")
            for key in ("st_frame", "ed_frame", "bbox"):
                if key not in ann:
                    raise ValueError(f"{where}: missing {key!r}")
            if not isinstance(ann["bbox"], list) or not ann["bbox"]:
                raise ValueError(f"{where}: 'bbox' must be a non-empty list of [x, y, w, h]")
            if not 0 <= int(ann["st_frame"]) <= int(ann["ed_frame"]):
                raise ValueError(f"{where}: need 0 <= st_frame <= ed_frame")
            box = xywh_to_xyxy(ann["bbox"][0], f"{where}: bbox[0]")
            items.append({"id": name, "root": root, "start": int(ann["st_frame"]), "end": int(ann["ed_frame"]), "box": box, "references": [caption]})
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            frames = load_clip(find_video(Path(it["root"]), it["id"]), it["start"], it["end"], self.config.generation.track_frames)
            rows.append({"id": it["id"], "prediction": generator.describe_video(frames, {"box": it["box"]})})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        return score_captions(predictions, items, ("METEOR", "CIDEr"), self.name)
