"""A free ``question=`` on the predictor (images and video), the evaluation harness on it, and
``pam predict --question`` (``--prompt``: its deprecated alias).

The reference is what the evaluation harness produced before it had a public path: sample dicts
with the user turn ``"<image>\\n" + text`` handed to the predictor's ``generate_samples``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pam.cli import main as pam_cli
from pam.eval.config import GenerationConfig
from pam.eval.generation import PAMGenerator
from pam.inference.predictor import PAMPredictor, QuestionError, question_turn
from pam.inference.regions import TaskError

from .helpers import synthetic_image

QUESTION = "What is the region used for?"
REGIONS = [{"box": [50.0, 40.0, 190.0, 130.0]}, {"points": [[120.0, 80.0], [200.0, 90.0]], "point_labels": [1, 0]}]
TOKENS = 6


@pytest.fixture(scope="module")
def generator(debug_bundle):
    return PAMGenerator(debug_bundle, GenerationConfig(max_new_tokens=TOKENS, do_sample=False))


def _full(region: dict) -> dict:
    out = {"points": None, "point_labels": None, "box": None, "mask": None}
    for key, value in region.items():
        out[key] = np.asarray(value, dtype=np.int64 if key == "point_labels" else np.float32)
    return out


def _old_image_path(predictor: PAMPredictor, image, regions, text):
    """The harness before: one sample per region, ``<image>\\n`` + text, through ``_generate``."""
    turns = [{"role": "user", "content": f"<image>\n{text}"}]
    samples = [
        {
            "id": f"region{i}",
            "media_type": "image",
            "image_key": "image",
            "pixels": image,
            "prompt": _full(r),
            "turns": turns,
        }
        for i, r in enumerate(regions)
    ]
    return predictor.generate_samples(samples)


def test_image_prompt_equals_the_harness_before(generator):
    predictor, image = generator.predictor, synthetic_image()
    before = _old_image_path(predictor, image, REGIONS, QUESTION)
    assert all(r.token_ids for r in before)  # something was generated to compare
    preds = predictor.predict(image, REGIONS, question=QUESTION)
    assert [p.texts for p in preds] == [{"question": r.text} for r in before]
    assert all(p.fields == {} for p in preds)  # free text is not parsed
    for p, r in zip(preds, before):
        np.testing.assert_array_equal(p.mask, r.mask)
    assert generator.describe_regions(image, REGIONS, text=QUESTION) == [r.text for r in before]
    # the placeholder may be placed by the caller (once)
    assert question_turn(f"<image>\n{QUESTION}") == question_turn(QUESTION) == f"<image>\n{QUESTION}"


def test_video_prompt_equals_the_harness_before(generator):
    predictor = generator.predictor
    frames = synthetic_image()[
        None, :96, :128
    ]  # one frame: the prompt is under test here, tracking in test_train_tracking
    region = {"box": [20.0, 10.0, 90.0, 70.0]}
    sample = {
        "id": "video",
        "media_type": "video",
        "image_key": "video",
        "pixels": frames,
        "prompt": _full(region),
        "turns": [{"role": "user", "content": f"<image>\n{QUESTION}"}],
    }
    [before] = predictor.generate_samples([sample])
    assert before.token_ids
    assert generator.describe_video(frames, region, text=QUESTION) == before.text
    video = predictor.predict_video(frames, region, question=QUESTION)
    assert video.text == before.text and video.masks.shape == (1, 96, 128)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tasks": ["category"], "question": QUESTION}, "tasks or a question, not both"),
        ({"question": ""}, "question is empty"),
        ({"question": "  \n "}, "question is empty"),
        ({"question": "<image> and <image>?"}, "2 times"),
        ({"question": "hi<|im_end|>"}, "chat-template token"),
        ({"question": 3}, "must be a string"),
        ({"question": QUESTION, "language": "fr"}, "unknown language"),
    ],
)
def test_bad_image_prompts_raise_before_any_model_work(generator, monkeypatch, kwargs, message):
    predictor = generator.predictor
    monkeypatch.setattr(predictor.model, "generate", lambda **_: pytest.fail("the model ran"))
    with pytest.raises(TaskError, match=message) as err:
        predictor.predict(synthetic_image(), REGIONS[:1], **kwargs)
    assert isinstance(err.value, QuestionError) or message == "unknown language"
    assert err.value.field == ("language" if message == "unknown language" else "question")


def test_bad_video_prompts_raise(generator, monkeypatch):
    predictor = generator.predictor
    monkeypatch.setattr(predictor.model, "generate", lambda **_: pytest.fail("the model ran"))
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(QuestionError, match="question or a caption history, not both"):
        predictor.predict_video(frames, {"box": [1, 1, 9, 9]}, question=QUESTION, history="it moved")
    with pytest.raises(QuestionError, match="empty"):
        predictor.predict_video(frames, {"box": [1, 1, 9, 9]}, question="")
    with pytest.raises(QuestionError, match="not both"):
        generator.describe_regions(synthetic_image(), REGIONS[:1], task="category", text=QUESTION)


def test_cli_predict_prompt(debug_bundle, tmp_path, capsys):
    from pam.checkpoints.pam_checkpoint import export_pam

    image = tmp_path / "scene.png"
    Image.fromarray(synthetic_image()).save(image)
    base = [
        "predict",
        str(image),
        "--box",
        "50,40,190,130",
        "--greedy",
        "--max-new-tokens",
        str(TOKENS),
        "--device",
        "cpu",
    ]
    # bad input fails before any checkpoint is read
    assert pam_cli([*base, "--checkpoint", str(tmp_path / "none"), "--question", ""]) == 2
    assert "question is empty" in capsys.readouterr().err
    assert pam_cli([*base, "--checkpoint", str(tmp_path / "none"), "--question", QUESTION, "--task", "category"]) == 2
    assert "--task or --question, not both" in capsys.readouterr().err
    ckpt = export_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt")
    assert pam_cli([*base, "--checkpoint", str(ckpt), "--question", QUESTION]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = PAMPredictor.from_pretrained(ckpt, device="cpu", greedy=True, generation={"max_new_tokens": TOKENS})
    [ref] = expected.predict(synthetic_image(), [{"box": [50, 40, 190, 130]}], question=QUESTION)
    assert out["texts"] == ref.texts and set(out["texts"]) == {"question"} and out["fields"] == {}
    # the deprecated --prompt still asks the question, with a warning
    assert pam_cli([*base, "--checkpoint", str(ckpt), "--prompt", QUESTION]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["texts"] == ref.texts and "--prompt is deprecated" in captured.err
