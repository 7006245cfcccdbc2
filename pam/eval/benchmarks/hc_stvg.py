"""HC-STVG video region captions (METEOR, CIDEr x100), scored as VideoRefer scores them.

Data: the official annotation JSON (tzhhhh123/HC-STVG ``README.md``; v1 ``test.json``, v2
``valv2.json`` as TubeDETR reads them): a mapping ``video file name -> {"caption" (v1) or
"English" (v2): str, "st_frame": int (1-based), "bbox": [[x, y, w, h], ...], ...}`` with one box
per frame from ``st_frame`` on; there is no end frame: the tube ends at ``st_frame + len(bbox) -
1``. Videos (mp4 files or frame folders named like the keys, extension optional) live in
``video_root`` (default: a ``videos`` folder beside the file, else the file's folder), directly or
in sub-folders (the official download splits them into parts). PAM captions the person boxed on
``st_frame`` over the tube's frames: SAM 2 tracks ``generation.track_frames`` of them (0 = all;
``st_frame`` first), the LLM sees the model's ``video_num_frames`` of those.

Scores: METEOR and CIDEr of pycocoevalcap after its PTB tokenizer, one reference per video, as
VideoRefer's ``captioning/eval_cococap.py`` computes them (COCOEvalCap); x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import BenchmarkConfig, GenerationConfig
from ..media import load_clip, load_json, xywh_to_xyxy
from ..registry import Benchmark, register
from ._common import media_root, score_captions


@dataclass
class HCSTVGConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=128)
    )
    video_root: str | None = None  # folder of the videos; None = <file folder>/videos, else the file's folder


def find_video(root: Path, name: str) -> Path:
    """The video (file or frame folder) named ``name`` in ``root`` or any folder below it."""
    names = (name, Path(name).stem)
    for candidate in names:
        if (root / candidate).exists():
            return root / candidate
    if root.is_dir():
        for candidate in names:
            found = sorted(root.rglob(candidate))
            if found:
                return found[0]
    raise FileNotFoundError(f"video {name!r} is not in {root} or below it (as a file or a frame folder)")


@register
class HCSTVG(Benchmark):
    name = "hc_stvg"
    paper = {"meteor": 23.3, "cider": 70.3}  # PAM-3B, paper tables
    config_class = HCSTVGConfig
    description = "HC-STVG video region captions: METEOR / CIDEr"
    official: ClassVar[dict[str, str]] = {
        "repo": "DAMO-NLP-SG/VideoRefer",
        "path": (
            "videorefer_videollama3/evaluation/captioning/eval_cococap.py (data: tzhhhh123/HC-STVG README.md @ 94ab6e9)"
        ),
        "commit": "cbd4207bf12e9d2f67ac71e54a260dd96697a83a",
    }
    options: ClassVar[dict[str, str]] = {}
    notes: ClassVar[str] = (
        "eval_cococap.py runs COCOEvalCap, whose SPICE downloads Stanford CoreNLP at run time; BLEU, ROUGE-L and SPICE "
        "are not reported. The end frame is st_frame + len(bbox) - 1 (the files have no ed_frame); st_frame is 1-based."
    )
    metrics: ClassVar[tuple[str, ...]] = ("meteor", "cider")

    def read_items(self, data: str | Path) -> list[dict]:
        doc = load_json(data)
        if not isinstance(doc, dict) or not doc:
            raise ValueError(f"{data}: expected a non-empty JSON object keyed by video name (HC-STVG format)")
        root = str(media_root(data, self.config.video_root, "videos"))
        items = []
        for name, ann in doc.items():
            where = f"{data}: record {name!r}"
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: expected a JSON object")
            key = "caption" if "caption" in ann else "English"
            if not isinstance(ann.get(key), str) or not ann[key].strip():
                raise ValueError(f"{where}, field 'caption' (v1) / 'English' (v2): missing or empty")
            st = ann.get("st_frame")
            if isinstance(st, bool) or not isinstance(st, int) or st < 1:
                raise ValueError(f"{where}, field 'st_frame': expected a 1-based frame number, got {st!r}")
            if not isinstance(ann.get("bbox"), list) or not ann["bbox"]:
                raise ValueError(f"{where}, field 'bbox': expected a non-empty list of [x, y, w, h]")
            box = xywh_to_xyxy(ann["bbox"][0], f"{where}, field 'bbox[0]'")
            start = st - 1  # 0-based index of the tube's first frame
            items.append(
                {
                    "id": name,
                    "root": root,
                    "start": start,
                    "end": start + len(ann["bbox"]) - 1,
                    "box": box,
                    "references": [ann[key]],
                }
            )
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            video = find_video(Path(it["root"]), it["id"])
            frames = load_clip(video, it["start"], it["end"], self.config.generation.track_frames)
            rows.append({"id": it["id"], "prediction": generator.describe_video(frames, {"box": it["box"]})})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        return score_captions(predictions, items, ("METEOR", "CIDEr"), self.name)
