"""Metrics against hand-computed values and against the libraries' own outputs."""

from __future__ import annotations

import shutil

import pytest

from pam.eval.metrics import (
    caption_metrics,
    category_accuracy,
    clean_category_text,
    load_similarity_model,
    normalize_answer,
    pairwise_semantic_similarity,
    semantic_iou,
    semantic_similarity,
)

requires_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer and METEOR need Java"
)


def test_normalize_answer():
    assert normalize_answer("  The Baseball_Bat. ") == "baseball bat"
    assert normalize_answer("An apple!") == "apple"
    assert normalize_answer("dog:collar") == "dog collar"
    assert normalize_answer("theater") == "theater"  # only whole-word articles go


def test_category_accuracy_hand_examples():
    preds = ["The dog.", "baseball_bat", "cat", "sofa", "Tomato!"]
    refs = ["dog", "baseball bat", "dog", "couch", "tomato"]
    assert category_accuracy(preds, refs) == pytest.approx(3 / 5)
    synonyms = [None, None, ["puppy"], ["sofa", "settee"], None]
    assert category_accuracy(preds, refs, synonyms) == pytest.approx(4 / 5)


def test_category_accuracy_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        category_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        category_accuracy([], [])
    with pytest.raises(ValueError, match="reference 0"):
        category_accuracy(["dog"], ["the"])


def test_semantic_iou_hand_examples():
    # Osprey's protocol: words split after turning _ : , . ( ) into spaces, case folded.
    assert semantic_iou(["dog collar"], ["collar"]) == pytest.approx(1 / 2)
    assert semantic_iou(["Red_apple."], ["red apple"]) == pytest.approx(1.0)
    assert semantic_iou(["shirt:sleeve"], ["shirt sleeve"]) == pytest.approx(1.0)
    assert semantic_iou([""], ["cat"]) == 0.0
    # {a, big, dog} vs {small, dog}: 1 / 4
    assert semantic_iou(["a big dog", "cat"], ["small dog", "cat"]) == pytest.approx((1 / 4 + 1) / 2)
    with pytest.raises(ValueError, match="reference 0"):
        semantic_iou(["x"], ["..."])


def test_clean_category_text():
    assert clean_category_text("Mug:Handle (left).") == "mug handle left"


def test_semantic_similarity_matches_sentence_transformers():
    from sentence_transformers import util

    preds = ["a brown dog", "red apple", "", "car wheel"]
    refs = ["puppy", "apple", "cat", "spreadsheet"]
    model = load_similarity_model()
    expected = [
        float(util.cos_sim(model.encode(p, convert_to_tensor=True), model.encode(r, convert_to_tensor=True))[0][0])
        for p, r in zip(preds, refs)
    ]
    got = pairwise_semantic_similarity(preds, refs, batch_size=2)
    assert got == pytest.approx(expected, abs=1e-5)
    assert semantic_similarity(preds, refs) == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    # Related pairs score above unrelated ones.
    assert got[1] > got[3]


def test_semantic_similarity_identical_and_cached():
    texts = ["a dog sleeping on a sofa", "traffic light"]
    assert semantic_similarity(texts, texts) == pytest.approx(1.0, abs=1e-5)
    assert load_similarity_model() is load_similarity_model()


def test_semantic_similarity_refuses_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="only loads local models"):
        semantic_similarity(["a"], ["a"], model_path=tmp_path / "absent")


@requires_java
def test_caption_metrics_equal_pycocoevalcap_scorers():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    preds = [
        "A man is riding a red bike down the street.",
        "two cats sleep on a couch",
        "a plate of food with broccoli",
        "",
    ]
    refs = [
        ["A man rides a bicycle on the road.", "A person riding a red bike."],
        ["Two cats are sleeping on the sofa."],
        ["A plate with broccoli and rice.", "Food on a white plate.", "Broccoli on a dish."],
        ["A stop sign at a corner."],
    ]
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {f"bleu_{n + 1}": bleu[n] for n in range(4)}
    meteor = Meteor()
    expected["meteor"] = meteor.compute_score(gts, res)[0]
    meteor.meteor_p.stdout.close()  # pycocoevalcap's __del__ leaves these two pipes open
    meteor.meteor_p.stderr.close()
    expected["rouge_l"] = Rouge().compute_score(gts, res)[0]
    expected["cider"] = Cider().compute_score(gts, res)[0]

    got = caption_metrics(preds, refs)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(float(value), abs=1e-9), key


@requires_java
def test_caption_metrics_identical_captions_known_values():
    captions = [
        "a man rides a red bicycle down the street",
        "two cats are sleeping on an old sofa",
        "broccoli and rice served on a white plate",
    ]
    got = caption_metrics(captions, [[c] for c in captions])
    assert got["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert got["meteor"] > 0.95
    assert got["rouge_l"] == pytest.approx(1.0)
    # A caption equal to its reference has the same TF-IDF vectors, so each item's cosine is 1 and
    # CIDEr is 10 (pycocoevalcap scales by 10); it needs n-grams not found in every item's
    # references, or their IDF is 0.
    assert got["cider"] == pytest.approx(10.0, abs=1e-6)


@requires_java
def test_caption_metrics_empty_predictions_and_subset():
    got = caption_metrics(["", "...", "  \n "], [["a dog"], ["a cat"], ["a bird flies"]])
    assert got == {
        "bleu_1": 0.0,
        "bleu_2": 0.0,
        "bleu_3": 0.0,
        "bleu_4": 0.0,
        "meteor": 0.0,
        "rouge_l": 0.0,
        "cider": 0.0,
    }
    # Line breaks inside a caption do not shift the PTB tokenizer's one-caption-per-line output.
    only_rouge = caption_metrics(["a dog\nruns", "a cat"], [["a dog runs"], ["a cat"]], metrics=("ROUGE_L",))
    assert only_rouge == {"rouge_l": pytest.approx(1.0)}


def test_caption_metrics_rejects_spice_and_bad_input():
    with pytest.raises(ValueError, match="SPICE"):
        caption_metrics(["a"], [["a"]], metrics=("SPICE",))
    with pytest.raises(ValueError, match="1 predictions but 2 reference lists"):
        caption_metrics(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="item 0"):
        caption_metrics(["a"], [[]])
