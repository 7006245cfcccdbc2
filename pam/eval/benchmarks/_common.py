"""Pieces shared by several benchmark files: media roots, image-region generation, caption scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..media import decode_segmentation, load_image, region_prompt, xywh_to_xyxy
from ..metrics import caption_metrics
from ..predictions import match_predictions

CAPTION_KEYS = {"METEOR": "meteor", "CIDEr": "cider", "ROUGE_L": "rouge_l"}


def media_root(data: str | Path, configured: str | None, default_sub: str | None = None) -> Path:
    """``configured`` if set, else the annotation file's folder (or ``default_sub`` inside it if that exists)."""
    if configured:
        return Path(configured)
    base = Path(data) if Path(data).is_dir() else Path(data).parent
    if default_sub and (base / default_sub).is_dir():
        return base / default_sub
    return base


def item_region(item: dict, use_mask: bool, height: int, width: int) -> dict:
    """The region prompt of an image item: its segmentation as a mask, else its xywh box."""
    where = f"item {item['id']!r}"
    if use_mask and item.get("segmentation") is not None:
        return region_prompt(mask=decode_segmentation(item["segmentation"], height, width, where))
    if item.get("bbox") is None:
        raise ValueError(f"{where}: no segmentation or bbox")
    return region_prompt(box_xyxy=xywh_to_xyxy(item["bbox"], where))


def describe_image_items(items: Sequence[dict], generator, *, use_mask: bool, text: str | None = None) -> list[str]:
    """Answers for image items, one SAM 2 encode per run of items on the same image."""
    out: list[str] = []
    start = 0
    while start < len(items):
        end = start
        while end < len(items) and items[end]["image"] == items[start]["image"]:
            end += 1
        group = items[start:end]
        image = load_image(group[0]["root"], group[0]["image"])
        h, w = image.shape[:2]
        regions = [item_region(it, use_mask, h, w) for it in group]
        out.extend(generator.describe_regions(image, regions, text=text))
        start = end
    return out


def score_captions(
    predictions: Sequence[dict], items: Sequence[dict], metrics: Sequence[str], what: str
) -> dict[str, float]:
    """pycocoevalcap scores (PTB-tokenised) x100 of each item's prediction against its ``references``."""
    rows = match_predictions(predictions, [it["id"] for it in items], what)
    preds = []
    for row in rows:
        if not isinstance(row.get("prediction"), str):
            raise ValueError(f"{what}: prediction {row['id']!r} has no 'prediction' string")
        preds.append(row["prediction"])
    scores = caption_metrics(preds, [it["references"] for it in items], metrics=tuple(metrics))
    out = {CAPTION_KEYS[m]: 100.0 * scores[CAPTION_KEYS[m]] for m in metrics}
    out["num_items"] = len(items)
    return out
