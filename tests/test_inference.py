"""The inference API: regions of one image, a video region, streaming captions; the pam CLI."""

from __future__ import annotations

import json

import numpy as np
import torch

from pam.cli import main as pam_cli
from pam.inference.predictor import PAMPredictor, mask_to_box
from pam.utils.visualize import overlay
from pam.processing.collator import PAMCollator

from .helpers import image_sample, region_mask, synthetic_image, video_sample


def test_describe_image_equals_model_generate(debug_bundle):
    predictor = PAMPredictor(debug_bundle, max_new_tokens=5)
    regions = [{"box": [50.0, 40.0, 190.0, 130.0]}, {"points": [[240.0, 150.0]], "point_labels": [1]}]
    results = predictor.describe_image(synthetic_image(), regions, task="category")
    assert len(results) == 2
    samples = [image_sample(f"r{i}", {k: np.asarray(v) for k, v in r.items()}) for i, r in enumerate(regions)]
    ref = debug_bundle.model.generate(**PAMCollator(debug_bundle.processor, for_generation=True)(samples), tokenizer=debug_bundle.tokenizer, max_new_tokens=5)
    for a, b in zip(results, ref):
        assert a.token_ids == b.token_ids and torch.equal(a.mask, b.mask)


def test_stream_video_carries_history_and_region(debug_bundle, monkeypatch):
    predictor = PAMPredictor(debug_bundle, max_new_tokens=4)
    frames = video_sample(num_frames=7)["pixels"]
    seen = []
    original = predictor.describe_video

    def spy(frames_, prompt, language="en", history=None):
        seen.append((len(frames_), {k: None if v is None else np.asarray(v).tolist() for k, v in prompt.items()}, history))
        return original(frames_, prompt, language=language, history=history)

    monkeypatch.setattr(predictor, "describe_video", spy)
    events = predictor.stream_video(frames, {"box": [10.0, 20.0, 50.0, 60.0]}, segment_length=3)
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 2), (3, 5), (6, 6)]
    assert [n for n, _, _ in seen] == [3, 3, 1]
    assert seen[0][2] is None and seen[1][2] == events[0].caption and seen[2][2] == events[1].caption
    # the second segment is prompted with the box of the first segment's last tracked mask
    expected = mask_to_box(events[0].mask[-1].numpy())
    if expected is not None:
        assert seen[1][1]["box"] == expected.tolist()
    assert events[0].mask.shape == (3, 96, 128)


def test_mask_to_box_and_overlay():
    m = region_mask()
    assert mask_to_box(m).tolist() == [50, 40, 190, 130]
    assert mask_to_box(np.zeros((4, 4), bool)) is None
    img = overlay(synthetic_image(), m, color=(0, 0, 255), alpha=1.0, box=[50, 40, 190, 130])
    arr = np.asarray(img)
    assert tuple(arr[80, 100]) == (0, 0, 255) and tuple(arr[5, 5]) == tuple(synthetic_image()[5, 5])


def test_cli_make_data_and_score(tmp_path, capsys):
    assert pam_cli(["make-data", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "train.jsonl").is_file()
    rows = [
        {"id": "a", "task": "category", "language": "en", "prediction": "lemon", "reference": "lemon"},
        {"id": "b", "task": "category", "language": "en", "prediction": "kite", "reference": "lemon"},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    capsys.readouterr()
    assert pam_cli(["score", str(tmp_path / "p.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["category_accuracy"] == 0.5
