"""Evaluation: benchmarks behind one registry, resumable prediction files, metrics, results tables.

pam eval --list
pam eval lvis --checkpoint CKPT --data lvis_val_1k_category.json --out runs/eval/lvis
pam score lvis runs/eval/lvis/predictions.jsonl --data lvis_val_1k_category.json
pam eval-table runs/eval/*
"""

from .config import BenchmarkConfig, GenerationConfig, JudgeConfig, load_config
from .predictions import (
    PredictionWriter,
    merge_predictions,
    read_predictions,
    write_predictions,
)
from .registry import (
    Benchmark,
    benchmark_class,
    get_benchmark,
    list_benchmarks,
    paper_figures,
    register,
)
from .results import checkpoint_hash, eval_table, write_results
from .runner import evaluate, evaluate_dataset, generate_predictions, score_file

__all__ = [
    "Benchmark",
    "BenchmarkConfig",
    "GenerationConfig",
    "JudgeConfig",
    "PredictionWriter",
    "benchmark_class",
    "checkpoint_hash",
    "eval_table",
    "evaluate",
    "evaluate_dataset",
    "generate_predictions",
    "get_benchmark",
    "list_benchmarks",
    "load_config",
    "merge_predictions",
    "paper_figures",
    "read_predictions",
    "register",
    "score_file",
    "write_predictions",
    "write_results",
]
