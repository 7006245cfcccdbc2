"""A free-text ``prompt=`` on the predictor (images and video), the evaluation harness on it, and
``pam predict --prompt``.

The reference is what the evaluation harness produced before it had a public path: sample dicts
with the user turn ``"<image>\\n" + text`` handed to the predictor's internal ``_generate``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pam.cli import main as pam_cli
from pam.eval.config import GenerationConfig
from pam.eval.generation import PAMGenerator
from pam.inference.predictor import PAMPredictor, PromptError, prompt_turn
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
        {"id": f"region{i}", "media_type": "image", "image_key": "image", "pixels": image, "prompt": _full(r), "turns": turns} for i, r in enumerate(regions)
    ]
    return predictor._generate(samples)


def test_image_prompt_equals_the_harness_before(generator):
    predictor, image = generator.predictor, synthetic_image()
    before = _old_image_path(predictor, image, REGIONS, QUESTION)
    assert all(r.token_ids for r in before)  # something was generated to compare
    preds = predictor.predict(image, REGIONS, prompt=QUESTION)
    assert [p.texts for p in preds] == [{"prompt": r.text} for r in before]
    assert all(p.fields == {} for p in preds)  # free text is not parsed
    for p, r in zip(preds, before):
        np.testing.assert_array_equal(p.mask, r.mask.numpy())
    assert generator.describe_regions(image, REGIONS, text=QUESTION) == [r.text for r in before]
    # the placeholder may be placed by the caller (once)
    assert prompt_turn(f"<image>\n{QUESTION}") == prompt_turn(QUESTION) == f"<image>\n{QUESTION}"


def test_video_prompt_equals_the_harness_before(generator):
    predictor = generator.predictor
    frames = synthetic_image()[None, :96, :128]  # one frame: the prompt is under test here, tracking in test_train_tracking
    region = {"box": [20.0, 10.0, 90.0, 70.0]}
    sample = {
        "id": "video",
        "media_type": "video",
        "image_key": "video",
        "pixels": frames,
        "prompt": _full(region),
        "turns": [{"role": "user", "content": f"<image>\n{QUESTION}"}],
    }
    [before] = predictor._generate([sample])
    assert before.token_ids
    assert generator.describe_video(frames, region, text=QUESTION) == before.text
    video = predictor.predict_video(frames, region, prompt=QUESTION)
    assert video.text == before.text and video.masks.shape == (1, 96, 128)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tasks": ["category"], "prompt": QUESTION}, "tasks or a prompt, not both"),
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "  \n "}, "prompt is empty"),
        ({"prompt": "<image> and <image>?"}, "2 times"),
        ({"prompt": 3}, "must be a string"),
        ({"prompt": QUESTION, "language": "fr"}, "unknown language"),
    ],
)
def test_bad_image_prompts_raise_before_any_model_work(generator, monkeypatch, kwargs, message):
    predictor = generator.predictor
    monkeypatch.setattr(predictor, "_generate", lambda samples: pytest.fail("the model ran"))
    with pytest.raises(TaskError, match=message) as err:
        predictor.predict(synthetic_image(), REGIONS[:1], **kwargs)
    assert isinstance(err.value, PromptError) or message == "unknown language"


def test_bad_video_prompts_raise(generator, monkeypatch):
    predictor = generator.predictor
    monkeypatch.setattr(predictor, "_generate", lambda samples: pytest.fail("the model ran"))
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(PromptError, match="prompt or a caption history, not both"):
        predictor.predict_video(frames, {"box": [1, 1, 9, 9]}, prompt=QUESTION, history="it moved")
    with pytest.raises(PromptError, match="empty"):
        predictor.predict_video(frames, {"box": [1, 1, 9, 9]}, prompt="")
    with pytest.raises(PromptError, match="not both"):
        predictor.describe_image(synthetic_image(), REGIONS[:1], task="category", prompt=QUESTION)


def test_cli_predict_prompt(debug_bundle, tmp_path, capsys):
    from pam.checkpoints.pam_checkpoint import export_pam

    image = tmp_path / "scene.png"
    Image.fromarray(synthetic_image()).save(image)
    base = ["predict", str(image), "--box", "50,40,190,130", "--greedy", "--max-new-tokens", str(TOKENS), "--device", "cpu"]
    # bad input fails before any checkpoint is read
    assert pam_cli([*base, "--checkpoint", str(tmp_path / "none"), "--prompt", ""]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert pam_cli([*base, "--checkpoint", str(tmp_path / "none"), "--prompt", QUESTION, "--task", "category"]) == 2
    assert "--task or --prompt, not both" in capsys.readouterr().err
    ckpt = export_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt")
    assert pam_cli([*base, "--checkpoint", str(ckpt), "--prompt", QUESTION]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = PAMPredictor.from_pretrained(ckpt, device="cpu", greedy=True, generation={"max_new_tokens": TOKENS})
    [ref] = expected.predict(synthetic_image(), [{"box": [50, 40, 190, 130]}], prompt=QUESTION)
    assert out["texts"] == ref.texts and set(out["texts"]) == {"prompt"} and out["fields"] == {}
