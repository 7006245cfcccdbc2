"""RefCOCOg val region captions (GLaMM/Osprey COCO-caption JSON; see :mod:`._coco_captions`)."""

from ..registry import register
from ._coco_captions import COCORegionCaptions


@register
class RefCOCOg(COCORegionCaptions):
    name = "refcocog"
    paper = {"meteor": 26.9, "cider": 143.1}  # PAM-3B, paper tables
    description = "RefCOCOg region captions: METEOR / CIDEr"
