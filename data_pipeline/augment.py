"""Augmentation: EN -> ZH translation through the chat backend, and prompt-type variants (a box and
sampled points for every masked frame, so points, boxes and masks can all prompt the region)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pam.clients import ChatBackend, ChatError, complete_many
from pam.data.schema import TEXT_FIELDS, Record

from .manifest import Manifest
from .prompts import load_prompt


def translate_records(
    records: Sequence[Record],
    backend: ChatBackend,
    manifest: Manifest,
    *,
    fields: Sequence[str] = TEXT_FIELDS,
    events: bool = True,
    max_workers: int = 4,
    prompt_version: int | None = None,
    max_tokens: int = 512,
) -> list[Record]:
    """Fill the ``zh`` text of every field (and event caption) that has ``en`` but no ``zh``."""
    prompt = load_prompt("translate_zh", prompt_version)
    manifest.prompts[prompt.name] = prompt.version
    manifest.backend = backend.describe()
    targets = []  # (text dict to fill, field name, english text)
    for record in records:
        for region in record.regions:
            for name in fields:
                text = getattr(region, name)
                if text and "en" in text and "zh" not in text:
                    targets.append((text, name, text["en"]))
            if events:
                for event in region.events:
                    if "en" in event.caption and "zh" not in event.caption:
                        targets.append((event.caption, "event caption", event.caption["en"]))
    batch = [
        [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.render(field=name.replace("_", " "), text=en)},
        ]
        for _, name, en in targets
    ]
    answers = complete_many(
        backend, batch, max_workers=max_workers, return_exceptions=True, max_tokens=max_tokens, temperature=0.0
    )
    step = manifest.step("translate")
    for (text, _, _), answer in zip(targets, answers):
        if isinstance(answer, ChatError):
            raise answer
        if isinstance(answer, BaseException):
            raise answer
        answer = answer.strip()
        if not answer:
            step.dropped["empty_translation"] += 1
            continue
        text["zh"] = answer
        step.kept += 1
    manifest.usage = backend.usage.as_dict()
    return list(records)


def _rng(record_id: str, region: int, frame: int, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{record_id}/{region}/{frame}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def add_prompt_variants(
    records: Sequence[Record], manifest: Manifest, *, num_points: int = 3, negative_points: int = 0, seed: int = 0
) -> list[Record]:
    """For every frame with a mask: the tight box (when missing) and ``num_points`` positive points
    drawn inside the mask (+ ``negative_points`` inside the box but outside the mask), seeded from
    the record id, region and frame so a re-run draws the same points."""
    step = manifest.step("variants")
    for record in records:
        for g, region in enumerate(record.regions):
            for frame, ann in region.masks.items():
                try:
                    mask = ann.decode(record.height, record.width) if ann.rle is None else ann.decode()
                except ValueError:
                    step.dropped["polygon_without_image_size"] += 1
                    continue
                ys, xs = np.nonzero(mask)
                if not len(xs):
                    step.dropped["empty_mask"] += 1
                    continue
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                region.boxes.setdefault(frame, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
                if frame in region.points:
                    continue
                rng = _rng(record.id, g, frame, seed)
                pick = rng.choice(len(xs), size=min(num_points, len(xs)), replace=False)
                points = [[float(xs[i]) + 0.5, float(ys[i]) + 0.5] for i in sorted(pick.tolist())]
                labels = [1] * len(points)
                if negative_points:
                    box = ~mask[y0:y1, x0:x1]
                    ny, nx = np.nonzero(box)
                    if len(nx):
                        pick = rng.choice(len(nx), size=min(negative_points, len(nx)), replace=False)
                        points += [[float(nx[i] + x0) + 0.5, float(ny[i] + y0) + 0.5] for i in sorted(pick.tolist())]
                        labels += [0] * len(pick)
                region.points[frame] = points
                region.point_labels[frame] = labels
                step.kept += 1
    return list(records)
