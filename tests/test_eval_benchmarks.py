"""Benchmark registry, prediction files and scoring from tiny hand-made files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pam.eval import benchmarks as bm
from pam.eval.metrics import caption_metrics, load_similarity_model


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


RECOGNITION_SAMPLES = [
    {"id": "r0", "category": "dog", "image": "img0.jpg"},
    {"id": "r1", "category": "baseball_bat"},
    {"id": "r2", "category": "couch", "synonyms": ["sofa"]},
    {"id": "r3", "category": "mug:handle"},
]
RECOGNITION_PREDICTIONS = [
    {"id": "r3", "prediction": "handle"},
    {"id": "r0", "prediction": "The dog."},
    {"id": "r2", "prediction": "sofa"},
    {"id": "r1", "prediction": "bat"},
]


def test_registry_lists_and_refuses_duplicates():
    assert {"region_recognition", "region_caption"} <= set(bm.list_benchmarks())
    assert isinstance(bm.get_benchmark("region_caption"), bm.RegionCaptionBenchmark)
    with pytest.raises(KeyError, match="unknown benchmark 'nope'.*region_caption"):
        bm.get_benchmark("nope")
    with pytest.raises(ValueError, match="already registered"):
        bm.register_benchmark(bm.RegionRecognitionBenchmark())
    custom = bm.RegionRecognitionBenchmark("lvis_test_only")
    try:
        assert bm.register_benchmark(custom) is custom
        assert bm.get_benchmark("lvis_test_only") is custom
        other = bm.RegionRecognitionBenchmark("lvis_test_only")
        bm.register_benchmark(other, replace=True)
        assert bm.get_benchmark("lvis_test_only") is other
    finally:
        bm._REGISTRY.pop("lvis_test_only", None)


def test_write_and_read_predictions_roundtrip(tmp_path):
    rows = [{"id": 1, "prediction": "un chat noir"}, {"id": "b", "prediction": "ü \"quoted\"\nline"}]
    path = bm.write_predictions(tmp_path / "out" / "preds.jsonl", rows)
    assert bm.read_predictions(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["preds.jsonl"]


def test_write_predictions_is_atomic(tmp_path):
    path = bm.write_predictions(tmp_path / "preds.jsonl", [{"id": 0, "prediction": "old"}])
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"row 1 \(id=1\)"):
        bm.write_predictions(path, [{"id": 0, "prediction": "new"}, {"id": 1, "prediction": object()}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]
    with pytest.raises(ValueError, match="row 0 must be a dict"):
        bm.write_predictions(path, [{"prediction": "no id"}])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 0, "prediction": "a"}\n{"id": 1, "prediction": \n', r"preds.jsonl:2: invalid JSON"),
        ('{"id": 0}\n\n["a list"]\n', r"preds.jsonl:3: expected a JSON object"),
        ('{"prediction": "a"}\n', r"preds.jsonl:1: missing 'id'"),
        ('{"id": 0}\n{"id": 1}\n{"id": 0}\n', r"preds.jsonl:3: duplicate id 0 \(first on line 1\)"),
        ('{"id": 1.5}\n', r"preds.jsonl:1: 'id' must be a string or an integer"),
    ],
)
def test_read_predictions_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "preds.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        bm.read_predictions(path)


def test_read_predictions_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        bm.read_predictions(tmp_path / "absent.jsonl")


def test_region_recognition_score_file(tmp_path):
    from sentence_transformers import util

    _write_jsonl(tmp_path / "samples.jsonl", RECOGNITION_SAMPLES)
    preds = bm.write_predictions(tmp_path / "preds.jsonl", RECOGNITION_PREDICTIONS)
    scores = bm.score_file("region_recognition", preds, tmp_path)  # folder -> samples.jsonl

    # dog == dog, sofa is a synonym of couch; bat != baseball bat, handle != mug handle.
    assert scores["category_accuracy"] == pytest.approx(2 / 4)
    # Word IoU: dog 1/2 ({the, dog} vs {dog}), bat 1/2, sofa 0, handle 1/2.
    assert scores["semantic_iou"] == pytest.approx((1 / 2 + 1 / 2 + 0 + 1 / 2) / 4)
    model = load_similarity_model()
    pairs = [("the dog", "dog"), ("bat", "baseball bat"), ("sofa", "couch"), ("handle", "mug handle")]
    expected_sim = sum(
        float(util.cos_sim(model.encode(p, convert_to_tensor=True), model.encode(r, convert_to_tensor=True)))
        for p, r in pairs
    ) / 4
    assert scores["semantic_similarity"] == pytest.approx(expected_sim, abs=1e-5)
    assert scores["num_samples"] == 4


def test_region_recognition_perfect_predictions(tmp_path):
    samples = _write_jsonl(tmp_path / "lvis.jsonl", RECOGNITION_SAMPLES)  # a file root
    preds = [{"id": s["id"], "prediction": s["category"]} for s in RECOGNITION_SAMPLES]
    scores = bm.score_file("region_recognition", bm.write_predictions(tmp_path / "p.jsonl", preds), samples)
    assert scores["category_accuracy"] == 1.0
    assert scores["semantic_iou"] == 1.0
    assert scores["semantic_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_missing_and_extra_ids_are_listed(tmp_path):
    samples = [{"id": f"s{i}", "category": "cat"} for i in range(15)]
    _write_jsonl(tmp_path / "samples.jsonl", samples)
    preds = [{"id": "zz1", "prediction": "cat"}, {"id": "zz2", "prediction": "cat"}]
    path = bm.write_predictions(tmp_path / "preds.jsonl", preds)
    with pytest.raises(ValueError) as err:
        bm.score_file("region_recognition", path, tmp_path)
    text = str(err.value)
    assert str(path) in text
    assert "15 sample ids have no prediction: ['s0', 's1'" in text
    assert "'s9'] and 5 more" in text and "'s10'" not in text
    assert "2 prediction ids are not samples: ['zz1', 'zz2']" in text


def test_prediction_text_must_be_string():
    samples = [{"id": 0, "category": "cat"}]
    with pytest.raises(ValueError, match="prediction 0: 'prediction' must be a string"):
        bm.get_benchmark("region_recognition").score([{"id": 0, "text": "cat"}], samples)


@pytest.mark.parametrize(
    ("benchmark", "row", "message"),
    [
        ("region_recognition", {"id": 0}, r"samples.jsonl:2: 'category' must be a non-empty string"),
        ("region_recognition", {"id": 0, "category": "a", "synonyms": "b"}, r"samples.jsonl:2: 'synonyms'"),
        ("region_caption", {"id": 0, "captions": []}, r"samples.jsonl:2: 'captions' must be a non-empty list"),
        ("region_caption", {"id": 0}, r"samples.jsonl:2: a caption sample needs"),
    ],
)
def test_sample_errors_name_file_and_line(tmp_path, benchmark, row, message):
    path = tmp_path / "samples.jsonl"
    path.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=message):
        bm.get_benchmark(benchmark).load_samples(path)


@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java")
def test_region_caption_score_file(tmp_path):
    from sentence_transformers import util

    samples = [
        {"id": 0, "captions": ["A man rides a red bicycle.", "A person on a bike in the street."]},
        {"id": 1, "caption": "Two cats sleeping on a sofa."},
        {"id": 2, "captions": ["A white plate with broccoli and rice."]},
    ]
    preds = [
        {"id": 2, "prediction": "a plate of broccoli"},
        {"id": 0, "prediction": "a man riding a red bike"},
        {"id": 1, "prediction": ""},
    ]
    _write_jsonl(tmp_path / "samples.jsonl", samples)
    path = bm.write_predictions(tmp_path / "preds.jsonl", preds)
    scores = bm.score_file("region_caption", path, tmp_path)

    pred_texts = ["a man riding a red bike", "", "a plate of broccoli"]
    refs = [samples[0]["captions"], [samples[1]["caption"]], samples[2]["captions"]]
    expected = caption_metrics(pred_texts, refs)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-9), key
    model = load_similarity_model()
    best = [
        max(
            float(util.cos_sim(model.encode(p, convert_to_tensor=True), model.encode(r, convert_to_tensor=True)))
            for r in rs
        )
        for p, rs in zip(pred_texts, refs)
    ]
    assert scores["semantic_similarity"] == pytest.approx(sum(best) / 3, abs=1e-5)
    assert scores["num_samples"] == 3
