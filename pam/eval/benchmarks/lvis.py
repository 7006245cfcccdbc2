"""LVIS region recognition (Osprey's ``lvis_val_1k_category.json``; see :mod:`._osprey`)."""

from ..registry import register
from ._osprey import OspreyRecognition


@register
class LVIS(OspreyRecognition):
    name = "lvis"
    paper = {"semantic_similarity": 88.6, "semantic_iou": 78.3}  # PAM-3B, paper tables
    description = "LVIS recognition, Osprey val-1k: Semantic Similarity / Semantic IoU"
