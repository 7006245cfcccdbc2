"""Visual Genome region captions (GLaMM's ``vg_test_coco_format.json``; see :mod:`._coco_captions`)."""

from ..registry import register
from ._coco_captions import COCORegionCaptions


@register
class VisualGenome(COCORegionCaptions):
    name = "vg"
    paper = {"meteor": 20.8, "cider": 142.3}  # PAM-3B, paper tables
    description = "Visual Genome region captions: METEOR / CIDEr"
