"""Benchmarks behind one interface, registered by name, scored from prediction files.

Inference writes one JSON line per sample, ``{"id": ..., "prediction": "<model text>"}``, with
``write_predictions``; ``score_file`` scores such a file against the benchmark's samples, so scoring
can be re-run without the model.

Samples are JSON lines too, keyed by ``"id"`` (a string or an integer, unique). A benchmark's
``load_samples(root)`` reads ``root`` itself when it is a file, or ``root/samples.jsonl`` when it is
a folder. Fields that scoring does not use (image, region, prompt) may ride along.

Registered here:

- ``region_recognition``: samples carry ``"category"`` and optionally ``"synonyms"`` (a list of
  other accepted names). Scores: ``category_accuracy``, ``semantic_similarity`` and
  ``semantic_iou`` as in the LVIS/PACO protocol of Osprey and PAM (category and prediction are
  cleaned with ``clean_category_text`` before embedding, so ``"dog:collar"`` reads "dog collar").
- ``region_caption``: samples carry ``"captions"`` (a list) or ``"caption"`` (one string). Scores:
  ``caption_metrics`` (BLEU-1..4, METEOR, ROUGE-L, CIDEr; no SPICE) and ``semantic_similarity``,
  the mean over samples of the best cosine similarity to any of the sample's references.

All scores are fractions (not percentages), except CIDEr, which is on pycocoevalcap's scale.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..utils.jsonl import iter_jsonl_objects
from typing import Any

from pam.eval.metrics import (
    CAPTION_METRICS,
    caption_metrics,
    category_accuracy,
    clean_category_text,
    pairwise_semantic_similarity,
    semantic_iou,
    semantic_similarity,
)

ID_KEY = "id"
PREDICTION_KEY = "prediction"
SAMPLES_FILENAME = "samples.jsonl"
_MAX_LISTED_IDS = 10


def _list_ids(ids: Sequence[Any]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_MAX_LISTED_IDS])
    more = f" and {len(ids) - _MAX_LISTED_IDS} more" if len(ids) > _MAX_LISTED_IDS else ""
    return f"[{shown}]{more}"


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """``(line number, row)`` for every non-blank line of a JSON-lines file of objects, each row
    carrying a unique ``"id"`` (str or int). Errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[tuple[int, dict]] = []
    first_line: dict[Any, int] = {}
    for line_no, row in iter_jsonl_objects(path):
        if ID_KEY not in row:
            raise ValueError(f"{path}:{line_no}: missing {ID_KEY!r}")
        row_id = row[ID_KEY]
        if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
            raise ValueError(f"{path}:{line_no}: {ID_KEY!r} must be a string or an integer, got {row_id!r}")
        if row_id in first_line:
            raise ValueError(
                f"{path}:{line_no}: duplicate {ID_KEY} {row_id!r} (first on line {first_line[row_id]})"
            )
        first_line[row_id] = line_no
        rows.append((line_no, row))
    return rows


def read_predictions(path: str | Path) -> list[dict]:
    """Rows of a predictions JSON-lines file; errors name the file and the line."""
    return [row for _, row in read_jsonl(path)]


def write_predictions(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON lines, atomically: a temporary file beside ``path``, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for index, row in enumerate(rows):
                if not isinstance(row, dict) or ID_KEY not in row:
                    raise ValueError(f"{path}: row {index} must be a dict with an {ID_KEY!r}")
                try:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                except TypeError as err:
                    raise TypeError(f"{path}: row {index} ({ID_KEY}={row[ID_KEY]!r}): {err}") from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def samples_path(root: str | Path) -> Path:
    """``root`` if it is a file, else ``root/samples.jsonl``."""
    root = Path(root)
    return root / SAMPLES_FILENAME if root.is_dir() else root


def match_predictions(predictions: Sequence[dict], samples: Sequence[dict]) -> list[str]:
    """The prediction text for each sample, in sample order.

    Raises a ValueError listing (up to 10) sample ids without a prediction, prediction ids that are
    not samples, and duplicated prediction ids.
    """
    by_id: dict[Any, dict] = {}
    duplicates = []
    for row in predictions:
        if ID_KEY not in row:
            raise ValueError(f"a prediction has no {ID_KEY!r}: {row!r}")
        if row[ID_KEY] in by_id:
            duplicates.append(row[ID_KEY])
        by_id[row[ID_KEY]] = row
    sample_ids = [s[ID_KEY] for s in samples]
    known = set(sample_ids)
    missing = [i for i in sample_ids if i not in by_id]
    extra = [i for i in by_id if i not in known]
    problems = []
    if missing:
        problems.append(f"{len(missing)} sample ids have no prediction: {_list_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} prediction ids are not samples: {_list_ids(extra)}")
    if duplicates:
        problems.append(f"{len(duplicates)} prediction ids repeat: {_list_ids(duplicates)}")
    if problems:
        raise ValueError("predictions do not match the samples: " + "; ".join(problems))
    texts = []
    for sample_id in sample_ids:
        text = by_id[sample_id].get(PREDICTION_KEY)
        if not isinstance(text, str):
            raise ValueError(
                f"prediction {sample_id!r}: {PREDICTION_KEY!r} must be a string, got {text!r}"
            )
        texts.append(text)
    return texts


class Benchmark(ABC):
    """A benchmark: how its samples are read and checked, and how predictions are scored."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load_samples(self, root: str | Path) -> list[dict]:
        """Samples from ``root`` (a JSON-lines file, or a folder holding ``samples.jsonl``)."""
        path = samples_path(root)
        rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"{path}: no samples")
        for line_no, row in rows:
            self.check_sample(row, f"{path}:{line_no}")
        return [row for _, row in rows]

    @abstractmethod
    def check_sample(self, sample: dict, where: str) -> None:
        """Raise a ValueError starting with ``where`` if ``sample`` lacks what scoring needs."""

    @abstractmethod
    def score(self, predictions: Sequence[dict], samples: Sequence[dict]) -> dict[str, float]:
        """Scores of ``predictions`` (rows with ``"id"`` and ``"prediction"``) on ``samples``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class RegionRecognitionBenchmark(Benchmark):
    """Region category recognition (LVIS / PACO style): accuracy, semantic similarity, semantic IoU."""

    def __init__(
        self,
        name: str = "region_recognition",
        *,
        similarity_model: str | Path | None = None,  # local sentence-transformers folder
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        super().__init__(name)
        self.similarity_model = similarity_model
        self.batch_size = batch_size
        self.device = device

    def check_sample(self, sample: dict, where: str) -> None:
        category = sample.get("category")
        if not isinstance(category, str) or not category.strip():
            raise ValueError(f"{where}: 'category' must be a non-empty string, got {category!r}")
        if "synonyms" in sample and not _string_list(sample["synonyms"]):
            raise ValueError(f"{where}: 'synonyms' must be a list of strings, got {sample['synonyms']!r}")

    def score(self, predictions: Sequence[dict], samples: Sequence[dict]) -> dict[str, float]:
        preds = match_predictions(predictions, samples)
        categories = [s["category"] for s in samples]
        synonyms = [s.get("synonyms") for s in samples]
        similarity = semantic_similarity(
            [clean_category_text(p) for p in preds],
            [clean_category_text(c) for c in categories],
            model_path=self.similarity_model,
            batch_size=self.batch_size,
            device=self.device,
        )
        return {
            "category_accuracy": category_accuracy(preds, categories, synonyms),
            "semantic_similarity": similarity,
            "semantic_iou": semantic_iou(preds, categories),
            "num_samples": len(samples),
        }


class RegionCaptionBenchmark(Benchmark):
    """Region captioning: pycocoevalcap caption metrics and semantic similarity."""

    def __init__(
        self,
        name: str = "region_caption",
        *,
        metrics: Sequence[str] = CAPTION_METRICS,  # subset of BLEU, METEOR, ROUGE_L, CIDEr
        similarity_model: str | Path | None = None,  # local sentence-transformers folder
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        super().__init__(name)
        self.metrics = tuple(metrics)
        self.similarity_model = similarity_model
        self.batch_size = batch_size
        self.device = device

    @staticmethod
    def references(sample: dict) -> list[str]:
        return sample["captions"] if "captions" in sample else [sample["caption"]]

    def check_sample(self, sample: dict, where: str) -> None:
        if "captions" in sample:
            captions = sample["captions"]
            if not _string_list(captions) or not captions:
                raise ValueError(f"{where}: 'captions' must be a non-empty list of strings, got {captions!r}")
        elif "caption" in sample:
            if not isinstance(sample["caption"], str):
                raise ValueError(f"{where}: 'caption' must be a string, got {sample['caption']!r}")
        else:
            raise ValueError(f"{where}: a caption sample needs 'captions' (list) or 'caption' (string)")

    def score(self, predictions: Sequence[dict], samples: Sequence[dict]) -> dict[str, float]:
        preds = match_predictions(predictions, samples)
        refs_lists = [self.references(s) for s in samples]
        scores: dict[str, float] = dict(caption_metrics(preds, refs_lists, self.metrics))
        pair_preds = [p for p, refs in zip(preds, refs_lists) for _ in refs]
        pair_refs = [r for refs in refs_lists for r in refs]
        pair_sims = pairwise_semantic_similarity(
            pair_preds, pair_refs, self.similarity_model, self.batch_size, self.device
        )
        best, start = [], 0
        for refs in refs_lists:
            best.append(max(pair_sims[start : start + len(refs)]))
            start += len(refs)
        scores["semantic_similarity"] = sum(best) / len(best)
        scores["num_samples"] = len(samples)
        return scores


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark, *, replace: bool = False) -> Benchmark:
    """Make ``benchmark`` available as ``get_benchmark(benchmark.name)``."""
    if benchmark.name in _REGISTRY and not replace:
        raise ValueError(
            f"benchmark {benchmark.name!r} is already registered ({_REGISTRY[benchmark.name]!r}); "
            "pass replace=True to swap it"
        )
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    if name not in _REGISTRY:
        raise KeyError(f"unknown benchmark {name!r}; registered: {list_benchmarks()}")
    return _REGISTRY[name]


def list_benchmarks() -> list[str]:
    return sorted(_REGISTRY)


def score_file(benchmark_name: str, predictions_path: str | Path, samples_root: str | Path) -> dict[str, float]:
    """Score a predictions JSON-lines file against a registered benchmark's samples."""
    benchmark = get_benchmark(benchmark_name)
    samples = benchmark.load_samples(samples_root)
    predictions = read_predictions(predictions_path)
    try:
        return benchmark.score(predictions, samples)
    except ValueError as err:
        raise ValueError(f"{predictions_path} against {samples_path(samples_root)}: {err}") from err


register_benchmark(RegionRecognitionBenchmark())
register_benchmark(RegionCaptionBenchmark())
