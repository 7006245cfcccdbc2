"""The synthetic quick-start test split: the end-of-training evaluation of the quick-start runs.

Data: a PAM-format JSONL (``test.jsonl`` written by ``pam make-data``), or a folder holding it
(with ``test_video.jsonl`` beside it, its clips are evaluated too). Every (region, task, language)
is one item; the task prompt comes from the item. Each video region with events is also streamed
once (``stream`` items): SAM 2 tracks it through the whole clip from a box around its first-frame
mask, and the default boundary rule (:class:`pam.inference.events.BoundaryRule`) cuts the events.
Prediction rows carry their references, so ``pam score quickstart PRED`` needs no data.

Scores (fractions unless said otherwise):

- ``category_accuracy`` (category task), ``semantic_similarity`` (all text rows);
- image captions (English short and detailed): ``caption_meteor``, ``caption_cider``, ``caption_bleu_1..4``;
- ``video_caption_meteor``: English event captions (``video_caption``, the true event's frames, the
  previous event's caption in the prompt);
- ``mask_iou``: mean IoU of the predicted mask with the true mask of the prompted region, over image
  rows; ``video_mask_iou``: the same over every tracked frame of video rows;
- ``track_iou``: mean per-frame IoU of the streamed masks over whole clips;
- ``event_boundary_error`` (frames): for each clip, every true boundary (an event start after frame
  0) is matched to the nearest predicted one and every predicted one to the nearest true one, where
  the clip's first and last frame count as boundaries of both sets (so a missed or an extra boundary
  costs its distance to the nearest real boundary or clip end); the mean of these distances over all
  clips' boundaries (0 when no clip has one);
- ``event_boundary_f1``: boundaries matched one to one within ``boundary_tolerance`` frames (F1 over
  all clips; 1 when there are no true and no predicted boundaries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import BenchmarkConfig, GenerationConfig
from ..metrics import caption_metrics, category_accuracy, semantic_similarity
from ..registry import Benchmark, register

CAPTION_TASKS = ("short_caption", "detailed_caption")
VIDEO_CAPTION_TASK = "video_caption"
STREAM_TASK = "stream"


@dataclass
class QuickstartConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task=None, max_new_tokens=128, batch_size=8)
    )
    tasks: tuple[str, ...] = ("category", "short_caption")  # tasks asked of every test region
    languages: tuple[str, ...] = ("en",)  # prompt languages
    data_seed: int = 0  # seeds the point/box prompt drawn for each region
    similarity_model: str | None = None  # local sentence-transformers folder; None = all-MiniLM-L6-v2
    stream: bool = True  # also stream every video region with events (event boundaries, tracking IoU)
    boundary_tolerance: int = 2  # frames within which a predicted event boundary matches a true one (event_boundary_f1)


def dataset_item_id(dataset, index: int) -> str:
    """A sample's id without decoding it, where the dataset can tell (RegionDataset, mixtures of them)."""
    if hasattr(dataset, "sample_id"):
        return dataset.sample_id(index)
    if hasattr(dataset, "locate") and hasattr(dataset, "components"):
        k, j = dataset.locate(index)
        inner = dataset.components[k].dataset
        if hasattr(inner, "sample_id"):
            return f"{dataset.components[k].name}/{inner.sample_id(j)}"
    return str(index)


def _datasets(dataset) -> list:
    """The region datasets inside ``dataset`` (itself, or a mixture's components)."""
    if hasattr(dataset, "components"):
        return [c.dataset for c in dataset.components]
    return [dataset]


def mask_iou(pred, truth) -> float:
    """IoU of two boolean masks of one size; 1 when both are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: predicted {pred.shape}, true {truth.shape}")
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def _nearest(values: list[int], anchors: list[int]) -> list[int]:
    return [min(abs(v - a) for a in anchors) for v in values]


def boundary_errors(pred: list[int], true: list[int], num_frames: int) -> list[int]:
    """Distances (frames) of each true boundary to the nearest predicted one and of each predicted
    one to the nearest true one; the clip's ends (0 and ``num_frames``) count in both sets."""
    ends = [0, num_frames]
    return _nearest(true, pred + ends) + _nearest(pred, true + ends)


def boundary_matches(pred: list[int], true: list[int], tolerance: int) -> int:
    """Predicted boundaries matched one to one to true ones within ``tolerance`` frames (closest pairs first)."""
    pairs = sorted(
        (abs(p - t), i, j) for i, p in enumerate(pred) for j, t in enumerate(true) if abs(p - t) <= tolerance
    )
    used_p, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


@register
class Quickstart(Benchmark):
    name = "quickstart"
    config_class = QuickstartConfig
    needs_data_to_score = False
    description = (
        "synthetic quick-start test split "
        "(category accuracy, similarity, captions, mask IoU, video captions, event boundaries)"
    )
    metrics = (
        "category_accuracy",
        "semantic_similarity",
        "caption_meteor",
        "caption_cider",
        "mask_iou",
        "video_mask_iou",
        "video_caption_meteor",
        "track_iou",
        "event_boundary_error",
        "event_boundary_f1",
    )
    notes = (
        "No official protocol: the synthetic split and its scoring are this repository's own. Scores are fractions "
        "(0 to 1) except event_boundary_error (frames); caption metrics are computed on English prompts only."
    )

    dataset = None
    regions: dict | None = None  # (record id, region index) -> (record, region), for true masks and streaming

    def read_items(self, data: str | Path) -> list[dict]:
        from ...data.datasets import load_region_dataset
        from ...data.mixture import MixtureDataset

        path = Path(data)
        if path.is_dir():
            path = path / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"quickstart data {path} does not exist (write it with `pam make-data --out DIR`)")
        cfg = self.config
        options = dict(
            languages=list(cfg.languages), task_mode="all", seed=cfg.data_seed, track_frames=cfg.generation.track_frames
        )
        dataset = load_region_dataset(str(path), tasks=list(cfg.tasks), name="quickstart", **options)
        video = path.with_name(path.stem + "_video.jsonl")
        if video.is_file() and "video_caption" in cfg.tasks:
            clips = load_region_dataset(str(video), tasks=["video_caption"], name="quickstart_video", **options)
            dataset = MixtureDataset(
                [{"name": "images", "dataset": dataset}, {"name": "videos", "dataset": clips}], seed=cfg.data_seed
            )
        return self.use_dataset(dataset)

    def use_dataset(self, dataset) -> list[dict]:
        """Evaluate an already built dataset of region samples (the trainer's test split; its video
        clips are tracked as its own ``track_frames`` says), then stream its video regions."""
        self.dataset = dataset
        self.regions = {}
        for ds in _datasets(dataset):
            for record in getattr(ds, "records", []):
                for g, region in enumerate(record.regions):
                    self.regions[(record.id, g)] = (record, region)
        items = [{"id": dataset_item_id(dataset, i), "index": i} for i in range(len(dataset))]
        if self.config.stream:
            for (record_id, g), (record, region) in self.regions.items():
                if record.media_type == "video" and region.events and 0 in region.masks:
                    items.append({"id": f"{STREAM_TASK}/{record_id}/r{g}", "record": record_id, "region": g})
        return items

    def _truth(self, sample: dict, frame: int) -> np.ndarray | None:
        meta = sample.get("meta") or {}
        found = (self.regions or {}).get((meta.get("record_id"), meta.get("region_index")))
        if found is None or frame not in found[1].masks:
            return None
        return found[1].masks[frame].decode()

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        if self.dataset is None:
            raise RuntimeError("quickstart.predict before read_items/use_dataset")
        streams = {it["id"]: self._stream(it, generator) for it in items if "record" in it}
        chosen = [it for it in items if "record" not in it]
        samples = [self.dataset[it["index"]] for it in chosen]
        results = iter(generator.generate_samples(samples) if samples else [])
        by_id = {}
        for it, s in zip(chosen, samples):
            r = next(results)
            row = {
                "id": it["id"],
                "sample_id": s["id"],
                "task": s.get("task"),
                "language": s.get("language"),
                "prediction": r.text,
                "reference": s["turns"][-1]["content"],
                "category": (s.get("meta") or {}).get("category"),
                "mask_score": r.score,
                "media_type": s.get("media_type"),
            }
            mask = np.asarray(r.mask)
            if s.get("media_type") == "video":
                ious = [
                    mask_iou(m, t)
                    for m, f in zip(mask, s.get("frame_indices") or [])
                    if (t := self._truth(s, f)) is not None
                ]
                if ious:
                    row["mask_iou"] = float(np.mean(ious))
            elif s.get("gt_mask") is not None:
                row["mask_iou"] = mask_iou(mask, s["gt_mask"])
            by_id[it["id"]] = row
        return [streams.get(it["id"]) or by_id[it["id"]] for it in items]

    def _stream(self, item: dict, generator) -> dict:
        """Stream one video region from a box around its first-frame mask: events, captions, masks."""
        from ...data.video import read_frame_files, read_video
        from ...inference.regions import Region
        from ...inference.streaming import stream_events
        from ...utils.masks import mask_to_box

        record, region = self.regions[(item["record"], item["region"])]
        total = 1 + max(max(region.masks), region.events[-1].end_frame)
        frames = (
            read_frame_files(record.frames, range(total))
            if record.frames is not None
            else read_video(record.video, range(total))
        )
        truth = [region.masks[f].decode() if f in region.masks else None for f in range(total)]
        box = mask_to_box(truth[0])
        language = self.config.languages[0]
        events = list(
            stream_events(
                generator.predictor, frames, list(range(total)), Region.from_any({"box": box}), language=language
            )
        )
        masks = np.concatenate([e.masks for e in events])
        ious = [mask_iou(m, t) for m, t in zip(masks, truth) if t is not None]
        return {
            "id": item["id"],
            "sample_id": f"{record.id}/r{item['region']}",
            "task": STREAM_TASK,
            "language": language,
            "prediction": " | ".join(e.caption for e in events),
            "reference": " | ".join(e.caption.get(language, "") for e in region.events),
            "pred_starts": [int(e.start_frame) for e in events[1:]],
            "true_starts": [int(e.start_frame) for e in region.events[1:]],
            "num_frames": total,
            "track_iou": float(np.mean(ious)) if ious else None,
        }

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None = None, judge=None) -> dict[str, float]:
        rows = list(predictions)
        if not rows:
            raise ValueError("quickstart: no predictions to score")
        for r in rows:
            for key in ("prediction", "reference", "task"):
                if not isinstance(r.get(key), str):
                    raise ValueError(
                        f"quickstart prediction {r.get('id')!r}: {key!r} must be a string, got {r.get(key)!r}"
                    )
        streams = [r for r in rows if r["task"] == STREAM_TASK]
        rows = [r for r in rows if r["task"] != STREAM_TASK]
        out: dict[str, float] = {"num_predictions": float(len(rows))}
        cat = [r for r in rows if r["task"] == "category"]
        if cat:
            out["category_accuracy"] = category_accuracy([r["prediction"] for r in cat], [r["reference"] for r in cat])
        if rows:
            out["semantic_similarity"] = semantic_similarity(
                [r["prediction"] for r in rows], [r["reference"] for r in rows], model_path=self.config.similarity_model
            )
        caps = [r for r in rows if r["task"] in CAPTION_TASKS and r.get("language", "en") == "en"]
        if caps:
            scores = caption_metrics(
                [r["prediction"] for r in caps], [[r["reference"]] for r in caps], metrics=("METEOR", "CIDEr", "BLEU")
            )
            out.update({f"caption_{k}": v for k, v in scores.items()})
        vcaps = [r for r in rows if r["task"] == VIDEO_CAPTION_TASK and r.get("language", "en") == "en"]
        if vcaps:
            out["video_caption_meteor"] = caption_metrics(
                [r["prediction"] for r in vcaps], [[r["reference"]] for r in vcaps], metrics=("METEOR",)
            )["meteor"]
        for key, media in (("mask_iou", "image"), ("video_mask_iou", "video")):
            ious = [
                r["mask_iou"]
                for r in rows
                if r.get("mask_iou") is not None and (r.get("media_type") or "image") == media
            ]
            if ious:
                out[key] = float(np.mean(ious))
        if streams:
            out.update(self._score_streams(streams))
        return out

    def _score_streams(self, streams: list[dict]) -> dict[str, float]:
        errors, matched, n_pred, n_true, ious = [], 0, 0, 0, []
        for r in streams:
            for key in ("pred_starts", "true_starts"):
                if not isinstance(r.get(key), list) or not all(isinstance(v, int) for v in r[key]):
                    raise ValueError(
                        f"quickstart prediction {r.get('id')!r}: {key!r} must be a list of frame numbers, "
                        f"got {r.get(key)!r}"
                    )
            if not isinstance(r.get("num_frames"), int) or r["num_frames"] < 1:
                raise ValueError(
                    f"quickstart prediction {r.get('id')!r}: 'num_frames' must be a positive int, "
                    f"got {r.get('num_frames')!r}"
                )
            errors += boundary_errors(r["pred_starts"], r["true_starts"], r["num_frames"])
            matched += boundary_matches(r["pred_starts"], r["true_starts"], self.config.boundary_tolerance)
            n_pred += len(r["pred_starts"])
            n_true += len(r["true_starts"])
            if r.get("track_iou") is not None:
                ious.append(float(r["track_iou"]))
        out = {
            "num_streams": float(len(streams)),
            "event_boundary_error": float(np.mean(errors)) if errors else 0.0,
            "event_boundary_f1": 1.0 if n_pred + n_true == 0 else 2 * matched / (n_pred + n_true),
        }
        if ious:
            out["track_iou"] = float(np.mean(ious))
        return out
