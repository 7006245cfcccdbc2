"""PACO part recognition (Osprey's ``paco_val_1k_category.json``; see :mod:`._osprey`)."""

from ..registry import register
from ._osprey import OspreyRecognition


@register
class PACO(OspreyRecognition):
    name = "paco"
    paper = {"semantic_similarity": 87.4, "semantic_iou": 74.9}  # PAM-3B, paper tables
    description = "PACO recognition, Osprey val-1k: Semantic Similarity / Semantic IoU"
