"""PACO part recognition (Osprey's ``paco_val_1k_category.json``; see :mod:`._osprey`)."""

from ..registry import register
from ._osprey import OspreyRecognition


@register
class PACO(OspreyRecognition):
    name = "paco"
    description = "PACO recognition, Osprey val-1k: Semantic Similarity / Semantic IoU"
