"""RefCOCOg val region captions (GLaMM/Osprey COCO-caption JSON; see :mod:`._coco_captions`)."""

from ..registry import register
from ._coco_captions import COCORegionCaptions


@register
class RefCOCOg(COCORegionCaptions):
    name = "refcocog"
    description = "RefCOCOg region captions: METEOR / CIDEr"
