"""Prediction files: append-only resume, a cut-off last line, merging shards, typed configs."""

from __future__ import annotations

import json

import pytest

from pam.eval import get_benchmark
from pam.eval.config import parse_overrides
from pam.eval.predictions import (
    PredictionWriter,
    done_ids,
    match_predictions,
    merge_predictions,
    read_predictions,
    shard_path,
    write_predictions,
)


def test_writer_resumes_and_drops_a_cut_off_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write({"id": "a", "prediction": "x"})
        w.write({"id": 1, "prediction": "y"})
        with pytest.raises(ValueError, match="item 'a' is already written"):
            w.write({"id": "a", "prediction": "again"})
    with path.open("a") as f:
        f.write('{"id": "c", "predic')  # a kill mid-write
    assert done_ids(path) == {"a", 1}
    with PredictionWriter(path) as w:
        assert w.done == {"a", 1}
        w.write({"id": "c", "prediction": "z"})
    assert [r["id"] for r in read_predictions(path)] == ["a", 1, "c"]
    assert path.read_text().count("\n") == 3


def test_a_bad_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 0}\n{"id": 1, \n{"id": 2}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: invalid JSON"):
        PredictionWriter(path)
    path.write_text('{"id": 0}\n{"id": 0}\n')
    with pytest.raises(ValueError, match=r"duplicate id 0 \(rows 1 and 2\)"):
        read_predictions(path)
    path.write_text('{"prediction": "a"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: missing 'id'"):
        read_predictions(path)


def test_merge_keeps_item_order_and_checks_completeness(tmp_path):
    path = tmp_path / "predictions.jsonl"
    write_predictions(shard_path(path, 0), [{"id": "i0"}, {"id": "i2"}])
    write_predictions(shard_path(path, 1), [{"id": "i1", "n": 1}, {"id": "i1", "n": 2}])  # a resumed shard repeats
    with pytest.raises(ValueError, match=r"1 items have no prediction after the merge: \['i3'\]"):
        merge_predictions(path, ["i0", "i1", "i2", "i3"])
    assert shard_path(path, 0).exists()  # nothing deleted on failure
    merge_predictions(path, ["i0", "i1", "i2"])
    assert [(r["id"], r.get("n")) for r in read_predictions(path)] == [("i0", None), ("i1", 1), ("i2", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]


def test_match_predictions_lists_problems():
    rows = [{"id": f"z{i}"} for i in range(2)] + [{"id": "s0"}, {"id": "s0"}]
    with pytest.raises(ValueError) as err:
        match_predictions(rows, [f"s{i}" for i in range(13)])
    text = str(err.value)
    assert "12 items have no prediction: ['s1', 's2'" in text and "and 2 more" in text
    assert "2 prediction ids are not items: ['z0', 'z1']" in text and "1 prediction ids repeat: ['s0']" in text


def test_configs_compose_and_name_bad_fields():
    for name in ("lvis", "dlc_bench", "quickstart"):
        bench = get_benchmark(name)
        assert bench.config.name == name
    lvis = get_benchmark("lvis", overrides=parse_overrides(["generation.max_new_tokens=7", "text_rule=videorefer"]))
    assert (
        lvis.config.generation.max_new_tokens == 7 and lvis.config.generation.task == "category"
    )  # other YAML fields kept
    assert lvis.config.text_rule == "videorefer"
    with pytest.raises(ValueError, match=r"lvis.text_rule: expected one of \('osprey', 'videorefer'\)"):
        get_benchmark("lvis", overrides={"text_rule": "symmetric"})
    with pytest.raises(ValueError, match=r"unknown config field\(s\) `lvis.generation.max_tokens`"):
        get_benchmark("lvis", overrides={"generation": {"max_tokens": 3}})
    with pytest.raises(ValueError, match=r"config field `refcocog.generation.max_new_tokens` must be int"):
        get_benchmark("refcocog", overrides={"generation": {"max_new_tokens": "many"}})
    with pytest.raises(ValueError, match=r"unknown benchmark 'nope'"):
        get_benchmark("nope")
    assert json.loads(json.dumps(get_benchmark("ferret").settings()))["judge"]["model"] == "gpt-4-0314"
