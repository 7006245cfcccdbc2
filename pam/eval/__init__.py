"""Evaluation: text metrics for region outputs and benchmarks scored from prediction files."""

from pam.eval.benchmarks import (
    Benchmark,
    RegionCaptionBenchmark,
    RegionRecognitionBenchmark,
    get_benchmark,
    list_benchmarks,
    read_predictions,
    register_benchmark,
    score_file,
    write_predictions,
)
from pam.eval.metrics import (
    caption_metrics,
    category_accuracy,
    normalize_answer,
    semantic_iou,
    semantic_similarity,
)

__all__ = [
    "Benchmark",
    "RegionCaptionBenchmark",
    "RegionRecognitionBenchmark",
    "caption_metrics",
    "category_accuracy",
    "get_benchmark",
    "list_benchmarks",
    "normalize_answer",
    "read_predictions",
    "register_benchmark",
    "score_file",
    "semantic_iou",
    "semantic_similarity",
    "write_predictions",
]
