"""Benchmark scores equal hand-computed values: the Osprey text rule, pooled captions, and the
judged benchmarks with a deterministic in-process judge."""

from __future__ import annotations

import re
import shutil
import threading

import pytest

from pam.eval import get_benchmark
from pam.eval.benchmarks import _common, activitynet_stream
from pam.eval.judge import ChatBackend
from pam.eval.metrics import caption_metrics, load_similarity_model

from .test_eval_readers import (
    write_activitynet,
    write_coco_captions,
    write_dlc,
    write_ferret,
    write_osprey,
    write_videorefer,
)


class ScriptedJudge:
    """Answers from a function of the prompt text; records every conversation (thread-safe)."""

    def __init__(self, answer):
        self.answer = answer
        self.seen: list[list[dict]] = []
        self.params: list[dict] = []
        self._lock = threading.Lock()

    def complete(self, messages, **params):
        with self._lock:
            self.seen.append(messages)
            self.params.append(params)
        return self.answer(messages[-1]["content"])


def test_scripted_judge_is_a_chat_backend():
    assert isinstance(ScriptedJudge(lambda t: t), ChatBackend)


def _cos(model, a: str, b: str) -> float:
    from sentence_transformers import util

    return float(util.cos_sim(model.encode(a, convert_to_tensor=True), model.encode(b, convert_to_tensor=True))[0][0])


@pytest.mark.parametrize(
    ("rule", "iou", "pairs"),
    [
        # Osprey: the prediction keeps the text after its first colon, then . : , become spaces; the
        # ground truth only loses _ and :; "(puppy)" and "shirt_sleeve" stay one word each.
        (
            "osprey",
            (1 / 2 + 0 + 1) / 3,
            [(" Dog (puppy)", "dog"), ("shirt_sleeve", "shirt sleeve"), (" baseball bat ", "baseball bat")],
        ),
        # VideoRefer: _ : , . ( ) become spaces on both sides, strip, lower.
        (
            "videorefer",
            (1 / 3 + 1 + 2 / 3) / 3,
            [
                ("label  dog  puppy", "dog"),
                ("shirt sleeve", "shirt sleeve"),
                ("category  baseball bat", "baseball bat"),
            ],
        ),
    ],
)
def test_lvis_text_rules_hand_computed(tmp_path, rule, iou, pairs):
    bench = get_benchmark("lvis", overrides={"text_rule": rule})
    items = bench.read_items(write_osprey(tmp_path, categories=("dog", "shirt_sleeve", "baseball_bat")))
    preds = [
        {"id": "1/0", "prediction": "Category: baseball bat."},
        {"id": "0/0", "prediction": "Label: Dog (puppy)"},
        {"id": "0/1", "prediction": "shirt_sleeve"},
    ]
    scores = bench.score(preds, items)
    assert scores["semantic_iou"] == pytest.approx(100 * iou)
    model = load_similarity_model()
    assert scores["semantic_similarity"] == pytest.approx(100 * sum(_cos(model, p, r) for p, r in pairs) / 3, abs=1e-4)
    assert scores["num_items"] == 3


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_refcocog_scores_are_pycocoevalcap_x100(tmp_path):
    bench = get_benchmark("refcocog")
    items = bench.read_items(write_coco_captions(tmp_path))
    preds = [
        {"id": 12, "prediction": "two cats on a couch"},
        {"id": 11, "prediction": "a man on a red bike"},
        {"id": 13, "prediction": "broccoli with rice on a plate"},
    ]
    scores = bench.score(preds, items)
    ref = caption_metrics(
        ["a man on a red bike", "broccoli with rice on a plate", "two cats on a couch"],
        [["a man riding a red bike"], ["a plate of broccoli and rice"], ["two cats sleeping on a sofa"]],
        metrics=("METEOR", "CIDEr"),
    )
    assert scores == {
        "meteor": pytest.approx(100 * ref["meteor"]),
        "cider": pytest.approx(100 * ref["cider"]),
        "num_items": 3,
    }


def test_activitynet_pools_events_and_gstdc_judges_each_video(tmp_path, monkeypatch):
    calls = []

    def fake_raw(preds, refs):
        calls.append((list(preds), list(refs)))
        return {"meteor": 0.25, "cider": 0.5}

    monkeypatch.setattr(activitynet_stream, "raw_meteor_cider", fake_raw)
    bench = get_benchmark("activitynet_stream")
    items = bench.read_items(write_activitynet(tmp_path))
    preds = [
        {"id": "1:V_bbb", "events": [{"event_id": 1, "pred": "a man puts tiles down"}]},
        {"id": "0:V_aaa", "events": [{"event_id": 1, "pred": "a boy swings"}, {"event_id": 2, "pred": "he jumps off"}]},
    ]
    scores = bench.score(preds, items)
    assert calls == [
        (
            ["a boy swings", "he jumps off", "a man puts tiles down"],
            [
                "A boy plays on a swing set.",
                "The boy jumps off the swing and runs away.",
                "A man lays tiles on the floor.",
            ],
        )
    ]
    assert scores == {
        "meteor": 25.0,
        "cider": 50.0,
        "num_videos": 2,
        "num_events": 3,
        "degenerate_boxes": 0,
        "skipped_videos": 0,
    }
    gstdc = get_benchmark("gstdc")
    judge = ScriptedJudge(
        lambda text: "Continuity Score: 4\nExplanation: smooth." if "Segment 2" in text else "I refuse"
    )
    scores = gstdc.score(preds, gstdc.read_items(write_activitynet(tmp_path)), judge=judge)
    # one judge call per video (upstream put every event of every video into one "unknown" video)
    assert len(judge.seen) == 2 and all(p == {"max_tokens": 4096} for p in judge.params)
    man, boy = sorted((m[-1]["content"] for m in judge.seen), key=lambda t: "boy" in t)
    assert "Segment 1: a man puts tiles down" in man and "boy" not in man and "Segment 2" not in man
    assert "Segment 2: he jumps off" in boy and "tiles" not in boy
    assert scores == {
        "g_stdc": 2.0,
        "unparsed": 1,
        "num_videos": 2,
        "num_events": 3,
        "degenerate_boxes": 0,
        "skipped_videos": 0,
    }
    with pytest.raises(ValueError, match="must list 2 events"):
        bench.score([preds[0], {"id": "0:V_aaa", "events": []}], items)


def test_caption_benchmarks_share_the_scorer_without_java(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        _common,
        "caption_metrics",
        lambda p, r, metrics: seen.append((p, r, metrics)) or {"rouge_l": 0.1, "meteor": 0.2, "cider": 0.3},
    )
    from .test_eval_readers import write_ref_l4

    bench = get_benchmark("ref_l4")
    items = bench.read_items(write_ref_l4(tmp_path, "json"))
    scores = bench.score([{"id": 1001, "prediction": "b"}, {"id": 1000, "prediction": "a"}], items)
    assert seen == [
        (["a", "b"], [[items[0]["references"][0]], [items[1]["references"][0]]], ("ROUGE_L", "METEOR", "CIDEr"))
    ]
    assert scores == {"rouge_l": 10.0, "meteor": 20.0, "cider": 30.0, "num_items": 2}


def _dlc_answer(text: str) -> str:
    """The judge's answers for write_dlc's objects, read from the official prompt's layout."""
    caption = re.search(r"The description is:\n(.*)\n\nFrom the description above", text, re.DOTALL).group(1)
    question = re.search(r"one of the choices:\n(.*?)\n", text).group(1)
    table = {
        ("A red cup.", "Is it likely that the object in the description is a cup or an object of a similar type?"): "A",
        ("A red cup.", "What colour is the cup?"): "D. Reddish",  # 0.5
        ("A red cup.", "Does the cup have a handle?"): "Perhaps",  # unparsed: 0
        (
            "A red cup.",
            "Does the caption mention a lid?",
        ): "(A) No lid mentioned",  # the one option inside the answer: 1
        (
            "A white cat.",
            "Is it likely that the object in the description is a dog or an object of a similar type?",
        ): "No",
        ("A white cat.", "What colour is the dog?"): "A",  # 1, clipped to min(0, 1) = 0: not recognised
        ("A white cat.", "Does the caption mention a collar?"): "B",  # -1 stays -1
    }
    question = question.split(" Again,")[0]
    return table[(caption, question)]


def test_dlc_bench_scoring_hand_computed(tmp_path):
    bench = get_benchmark("dlc_bench")
    items = bench.read_items(write_dlc(tmp_path))
    judge = ScriptedJudge(_dlc_answer)
    scores = bench.score(
        [{"id": "8", "prediction": "A white cat."}, {"id": "7", "prediction": "A red cup."}], items, judge=judge
    )
    # per object first: positive cup (0.5 + 0) / 2, dog 0 -> 0.125; negative cup 1, dog -1 -> 0
    pos, neg = 0.125, 0.0
    assert scores == {
        "positive": pytest.approx(100 * pos),
        "negative": pytest.approx(100 * neg),
        "average": pytest.approx(100 * (pos + neg) / 2),
        "num_items": 2,
        "unrecognized": 1,
        "unparsed_answers": 1,
    }
    assert len(judge.seen) == 7  # every question is asked, as the official script does
    assert all(
        p == {"temperature": 0.0, "max_tokens": 300, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0}
        for p in judge.params
    )
    with pytest.raises(ValueError, match="dlc_bench is scored by a judge LLM"):
        bench.score([], items)


def test_videorefer_d_judge_scores(tmp_path):
    bench = get_benchmark("videorefer_d")
    items = bench.read_items(write_videorefer(tmp_path)[0])
    good = (
        "1. Subject Correspondence: 4\n2. Appearance Description: 3\n3. Temporal Description: 2\n"
        "4. Hallucination Detection: 5"
    )
    judge = ScriptedJudge(lambda text: good if "slides" in text else "1. Subject Correspondence: 2\nno idea")
    scores = bench.score([{"id": 0, "prediction": "a block"}, {"id": 1, "prediction": "a cube"}], items, judge=judge)
    # each dimension is averaged over the answers that gave it (3.analyze_score.py)
    assert scores == {
        "subject_correspondence": 3.0,
        "appearance": 3.0,
        "temporal": 2.0,
        "hallucination": 5.0,
        "average": 3.25,
        "num_subject_correspondence": 2,
        "num_appearance": 1,
        "num_temporal": 1,
        "num_hallucination": 1,
        "num_items": 2,
        "unparsed": 1,
    }
    assert all(p == {"temperature": 0.7, "max_tokens": 800, "top_p": 0.95} for p in judge.params)


def test_videorefer_q_accuracy_per_type(tmp_path):
    bench = get_benchmark("videorefer_q")
    items = bench.read_items(write_videorefer(tmp_path)[1])
    preds = [
        {"id": 0, "prediction": "A"},
        {"id": 1, "prediction": "(A) blue"},
        {"id": 2, "prediction": "C. it vanishes"},
    ]
    assert bench.score(preds, items) == {
        "accuracy": pytest.approx(200 / 3),
        "accuracy/Basic Questions": 50.0,
        "accuracy/Sequential Questions": 100.0,
        "accuracy/single_object": pytest.approx(200 / 3),
        "num_single_object": 3,
        "num_multi_object": 0,
        "num_items": 3,
        "empty_answers": 0,
    }


def test_ferret_ratio(tmp_path):
    bench = get_benchmark("ferret")
    items = bench.read_items(write_ferret(tmp_path))
    judge = ScriptedJudge(lambda text: "8 6\nAssistant 2 is vaguer." if "drinking" in text else "7 7\nBoth fine.")
    scores = bench.score([{"id": 0, "prediction": "for tea"}, {"id": 1, "prediction": "a marker"}], items, judge=judge)
    # means (7.5, 6.5), each rounded to 3 places; ratio round(6.5 / 7.5 * 100, 1)
    assert scores == {"ratio": 86.7, "pam_score": 6.5, "reference_score": 7.5, "num_items": 2, "unparsed": 0}
    assert (
        judge.seen[0][0]["role"] == "system"
        and "[Assistant 2]\nfor tea\n\n[End of Assistant 2]" in judge.seen[0][1]["content"]
    )
