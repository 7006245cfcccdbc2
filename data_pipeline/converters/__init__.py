"""One converter per public source, each ``convert(annotations, images, counts, **options)`` yielding
validated :class:`pam.data.schema.Record` objects. :data:`CONVERTERS` maps the command-line name to
(module, fixed options)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import Counts

CONVERTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "coco": ("coco", {}),
    "lvis": ("lvis", {}),
    "paco": ("paco", {}),
    "objects365": ("detection", {"source": "objects365"}),
    "v3det": ("detection", {"source": "v3det"}),
    "refcoco": ("refcoco", {"source": "refcoco"}),
    "refcoco+": ("refcoco", {"source": "refcoco+"}),
    "refcocog": ("refcoco", {"source": "refcocog"}),
    "vg": ("visual_genome", {}),
    "osprey": ("osprey", {}),
    "sav": ("sav", {}),
    "ytvis": ("ytvis", {}),
    "videorefer": ("videorefer", {}),
    "pam-release": ("pam_release", {}),
}


def converter(source: str):
    if source not in CONVERTERS:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(CONVERTERS)}")
    module, fixed = CONVERTERS[source]
    return importlib.import_module(f"{__name__}.{module}").convert, fixed


def options_of(source: str) -> set[str]:
    """Keyword options the source's converter accepts (besides annotations, images, counts)."""
    fn, fixed = converter(source)
    params = inspect.signature(fn).parameters
    return {name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - set(fixed)


def convert(source: str, annotations: str, images: str | None, counts: Counts, **options: Any) -> Iterator[Record]:
    """Records of ``annotations`` in ``source``'s official format; unknown options raise naming them."""
    fn, fixed = converter(source)
    unknown = sorted(set(options) - options_of(source))
    if unknown:
        raise ValueError(f"source {source!r} takes no option(s) {unknown}; it takes {sorted(options_of(source))}")
    return fn(annotations, images, counts, **{**options, **fixed})
