"""Visual Genome region captions (GLaMM's ``vg_test_coco_format.json``; see :mod:`._coco_captions`)."""

from ..registry import register
from ._coco_captions import COCORegionCaptions


@register
class VisualGenome(COCORegionCaptions):
    name = "vg"
    paper = {"meteor": 20.8, "cider": 142.3}  # PAM-3B, paper tables
    description = "Visual Genome region captions: METEOR / CIDEr"
    official = {
        "repo": "mbzuai-oryx/groundingLMM",
        "path": "eval/region_captioning/evaluate.py",
        "commit": "e74865f207d02c8cbb54795758b855acd6bb51bb",
    }
    options = {"use_mask=true": "prompt with the segmentation instead of the box, where there is one"}
    notes = (
        "GLaMM scores with pycocoevalcap's COCOEvalCap (PTB tokenizer) keyed by image id, its files holding one region "
        "per image; the harness keys by annotation id, the same pairing on those files. SPICE, which needs an online "
        "download, is not computed."
    )
    metrics = ("meteor", "cider")
