"""Visual Genome ``region_descriptions.json``: a list of ``{"id": image_id, "regions": [{"region_id",
"image_id", "phrase", "x", "y", "width", "height"}]}``.

Each region becomes a box with its phrase as ``short_caption``. Image files are ``<image_id>.jpg``
inside ``VG_100K`` or ``VG_100K_2``: with ``--images`` the converter looks in both (and the folder
itself); without, it writes ``<image_id>.jpg``. ``image_data`` (``image_data.json``) adds sizes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, record_from, require

SOURCES = ("vg",)
SUBFOLDERS = ("VG_100K", "VG_100K_2", "")


def _find_image(images: str | None, image_id) -> str | None:
    name = f"{image_id}.jpg"
    if not images:
        return name
    for sub in SUBFOLDERS:
        path = os.path.join(images, sub, name)
        if os.path.isfile(path):
            return path
    return None


def convert(
    annotations: str, images: str | None, counts: Counts, *, image_data: str | None = None, source: str = "vg"
) -> Iterator[Record]:
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ConvertError(f"{annotations}: expected a list of {{'id', 'regions'}} entries, got {type(data).__name__}")
    sizes = {}
    if image_data:
        for entry in load_json(image_data):
            sizes[entry.get("image_id", entry.get("id"))] = (entry.get("height"), entry.get("width"))
    for k, entry in enumerate(data):
        where = f"{annotations}: [{k}]"
        with counts.entry(where):
            regions_in = require(entry, "regions", list, where)
            image_id = entry.get("id", entry.get("image_id"))
            if image_id is None:
                raise ConvertError(f"{where}: field `id` (the image id) is missing")
            path = _find_image(images, image_id)
            if path is None:
                counts.skip("image_not_found", len(regions_in))
                continue
            regions = []
            for j, reg in enumerate(regions_in):
                at = f"{where}.regions[{j}]"
                phrase = reg.get("phrase")
                if not isinstance(phrase, str) or not phrase.strip():
                    counts.skip("no_phrase")
                    continue
                box = [require(reg, key, (int, float), at) for key in ("x", "y", "width", "height")]
                if box[2] <= 0 or box[3] <= 0:
                    counts.skip("empty_box")
                    continue
                regions.append(
                    {
                        "box": [float(c) for c in box],
                        "short_caption": phrase.strip(),
                        "extra": {"region_id": reg.get("region_id")},
                    }
                )
            if not regions:
                counts.skip("image_without_regions")
                continue
            rec = {"id": f"{source}/{image_id}", "image": path, "source": source, "regions": regions}
            h, w = sizes.get(image_id, (None, None))
            if isinstance(h, int) and isinstance(w, int):
                rec.update(height=h, width=w)
            yield record_from(rec, where)
