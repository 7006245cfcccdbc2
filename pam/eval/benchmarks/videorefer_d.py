"""VideoRefer-Bench-D: video region descriptions scored by a judge on four 0-5 dimensions.

Data: ``VideoRefer-Bench-D.json`` (list of ``{"id"?, "video", "caption", "annotation"}``; see
:mod:`._videorefer`). The judge compares PAM's description with the reference caption and scores
Subject Correspondence (SC), Appearance Description (AD), Temporal Description (TD) and
Hallucination Detection (HD) from 0 to 5. Scores: the mean of each over items and ``average``,
their mean. An unparsable judge answer scores 0 on all four and is counted in ``unparsed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig, JudgeConfig
from ..judge import ask_all, parse_labeled_scores, user
from ..media import load_json
from ..predictions import match_predictions
from ..registry import Benchmark, register
from ._common import media_root
from ._videorefer import first_object_region, load_item_clip

DIMENSIONS = {"subject_correspondence": "Subject Correspondence", "appearance": "Appearance Description", "temporal": "Temporal Description", "hallucination": "Hallucination Detection"}

JUDGE_PROMPT = """You compare a predicted description of one object in a video with the reference description of that object.
Score the prediction from 0 to 5 (integers; 5 is best) on each dimension:
- Subject Correspondence: does the prediction describe the same subject as the reference?
- Appearance Description: how accurately does it describe the subject's appearance?
- Temporal Description: how accurately does it describe the subject's actions and changes over time?
- Hallucination Detection: 5 if it invents nothing absent from the reference and the video, lower the more it invents.

Reference description:
{reference}

Predicted description:
{prediction}

Answer with exactly four lines:
Subject Correspondence: <score>
Appearance Description: <score>
Temporal Description: <score>
Hallucination Detection: <score>"""


@dataclass
class VideoReferDConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task="video_caption", max_new_tokens=256))
    judge: JudgeConfig | None = field(default_factory=JudgeConfig)
    video_root: str | None = None  # folder of videos; None = <file folder>/videos, else the file's folder


@register
class VideoReferD(Benchmark):
    name = "videorefer_d"
    config_class = VideoReferDConfig
    needs_judge = True
    description = "VideoRefer-Bench-D descriptions, judged: SC / AD / TD / HD (0-5)"

    def read_items(self, data: str | Path) -> list[dict]:
        entries = load_json(data)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{data}: expected a non-empty JSON list (VideoRefer-Bench-D)")
        root = str(media_root(data, self.config.video_root, "videos"))
        items = []
        for k, e in enumerate(entries):
            where = f"{data}: entry {k}"
            if not isinstance(e, dict) or not isinstance(e.get("video"), str) or not isinstance(e.get("caption"), str):
                raise ValueError(f"{where}: needs 'video' and 'caption' strings")
            frame, seg = first_object_region(e, where)
            items.append({"id": e.get("id", k), "root": root, "video": e["video"], "frame": frame, "segmentation": seg, "reference": e["caption"]})
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        rows = []
        for it in items:
            frames, region = load_item_clip(it, self.config.generation.track_frames)
            rows.append({"id": it["id"], "prediction": generator.describe_video(frames, region)})
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError("videorefer_d is scored by a judge LLM: give judge settings or a judge object")
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        prompts = [user(JUDGE_PROMPT.format(reference=it["reference"], prediction=r.get("prediction", ""))) for it, r in zip(items, rows)]
        totals = dict.fromkeys(DIMENSIONS, 0.0)
        unparsed = 0
        for answer in ask_all(judge, prompts, self.config.judge):
            got = parse_labeled_scores(answer, list(DIMENSIONS.values()), 0, 5)
            if got is None:
                unparsed += 1
                continue
            for key, label in DIMENSIONS.items():
                totals[key] += got[label]
        n = len(items)
        out = {key: totals[key] / n for key in DIMENSIONS}
        out["average"] = sum(out.values()) / len(DIMENSIONS)
        out.update(num_items=n, unparsed=unparsed)
        return out
