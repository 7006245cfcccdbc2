"""The demo's handlers without a browser: four answers in one call, errors naming the field, streaming video."""

from __future__ import annotations

import numpy as np
import pytest

from pam.data.video import write_video_mp4
from pam.inference.events import BoundaryRule
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.inference.request import RegionRequest
from pam.serve.demo import IMAGE_TASKS, DemoHandlers, read_clip
from pam.serve.engine import Engine
from pam.serve.protocol import RequestError
from pam.utils.visualize import overlay

from .helpers import synthetic_image, video_sample


@pytest.fixture(scope="module")
def handlers(debug_bundle):
    return DemoHandlers(Engine(debug_bundle, max_new_tokens=4, random_weights=True))


def test_describe_gives_four_answers_from_one_encode(handlers, debug_bundle, monkeypatch):
    calls = []
    original = debug_bundle.model.sam2.encode_images
    monkeypatch.setattr(debug_bundle.model.sam2, "encode_images", lambda pv: calls.append(pv.shape[0]) or original(pv))
    image = synthetic_image()
    points = [[240.0, 150.0, 1], [20.0, 20.0, 0]]
    picture, *texts, info = handlers.describe(image, points, "50, 40, 190, 130")
    assert calls == [1]
    region = {"box": [50, 40, 190, 130], "points": [[240.0, 150.0], [20.0, 20.0]], "point_labels": [1, 0]}
    predictor = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(4))
    refs = predictor.generate([RegionRequest(region=region, image=image, task=task) for task, _ in IMAGE_TASKS])
    for ref, text in zip(refs, texts):
        assert text == (
            ref.text
            or f"(no text: the model produced {len(ref.token_ids)} tokens that decode to whitespace or special tokens)"
        )
    ref_mask = refs[0].mask
    expected = overlay(
        image, ref_mask, box=[50, 40, 190, 130], points=np.array([[240.0, 150.0], [20.0, 20.0]]), labels=[1, 0]
    )
    assert np.array_equal(np.asarray(picture), np.asarray(expected))
    assert "mask score" in info


@pytest.mark.parametrize(
    "image,points,box,param",
    [
        (None, [], "1, 2, 3, 4", "image"),
        ("img", [], "", "region"),
        ("img", [], "1, 2, three, 4", "box"),
        ("img", [], "10, 10, 400, 50", "box"),
        ("img", [[500.0, 10.0, 1]], "", "points"),
    ],
)
def test_describe_rejects_bad_input_naming_the_field(handlers, image, points, box, param):
    with pytest.raises(RequestError) as err:
        handlers.describe(synthetic_image() if image == "img" else None, points, box)
    assert err.value.param.startswith(param)


def test_stream_yields_each_event_as_the_predictor_streams_it(handlers, debug_bundle, tmp_path):
    frames = video_sample(num_frames=5)["pixels"]
    path = tmp_path / "clip.mp4"
    write_video_mp4(str(path), frames)
    updates = list(handlers.stream(str(path), "10, 20, 50, 60", 3))
    assert len(updates) == 1 + 2  # the box on frame 0, then one update per segment (3 + 2 frames)
    decoded, _ = read_clip(str(path))
    rule = BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=3)
    events = list(
        PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(4)).stream(
            decoded, {"box": [10.0, 20.0, 50.0, 60.0]}, boundaries=rule
        )
    )
    preview, text, gallery = updates[-1]
    captions = [" ".join(e.caption.split()) or "(no text)" for e in events]
    assert [caption for _, caption in gallery] == [
        f"{e.start_frame}-{e.end_frame}: {c}" for e, c in zip(events, captions)
    ]
    assert text.splitlines()[1:] == [f"frames {e.start_frame}-{e.end_frame}: {c}" for e, c in zip(events, captions)]
    assert np.array_equal(preview, np.asarray(overlay(decoded[4], np.asarray(events[-1].masks[-1]), caption="frame 4")))


def test_stream_needs_a_video_and_a_box(handlers, tmp_path):
    with pytest.raises(RequestError, match="upload a video"):
        next(handlers.stream(None, "1, 2, 3, 4", 3))
    path = tmp_path / "clip.mp4"
    write_video_mp4(str(path), video_sample(num_frames=2)["pixels"])
    with pytest.raises(RequestError, match="box"):
        next(handlers.stream(str(path), "", 3))
