"""The inference API: typed regions and errors, N regions = N single calls, fields and RLE,
streaming over one tracking state, event boundaries; the pam data CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pam.cli import main as pam_cli
from pam.inference.events import BoundaryDetector, BoundaryRule
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor, mask_to_box
from pam.inference.regions import ImageInputError, RegionError, TaskError
from pam.inference.request import RegionRequest
from pam.inference.results import decode_rle
from pam.processing.collator import PAMCollator
from pam.processing.prompts import parse_fields
from pam.utils.visualize import contour, overlay

from .helpers import image_sample, region_mask, synthetic_image

BOX = [50.0, 40.0, 190.0, 130.0]


@pytest.fixture(scope="module")
def predictor(debug_bundle):
    return PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(max_new_tokens=4))


def test_n_regions_equal_n_single_calls(predictor):
    img = synthetic_image()
    regions = [
        {"points": [[240.0, 150.0], [100, 80]], "labels": [1, 0]},
        {"mask": region_mask()},
        {"box": BOX, "points": [[100.0, 80.0]]},
    ]
    together = predictor.predict(img, regions, tasks=["category", "short_caption"])
    assert len(together) == 3
    for r, joint in zip(regions, together):
        [alone] = predictor.predict(img, [r], tasks=["category", "short_caption"])
        assert joint.texts == alone.texts and joint.score == pytest.approx(alone.score, abs=1e-6)
        assert np.array_equal(joint.mask, alone.mask) and joint.mask.shape == (200, 300)
        assert np.array_equal(decode_rle(joint.rle), joint.mask)
    # the batched form over images gives the same per-image results
    batched = predictor.predict_batch(
        [(img, regions[:2]), (synthetic_image(seed=1), regions[2:3])], tasks=["category", "short_caption"]
    )
    assert [p.texts for p in batched[0]] == [p.texts for p in together[:2]]
    assert json.loads(json.dumps(together[0].to_json()))["mask_rle"]["size"] == [200, 300]


def test_predict_equals_model_generate_decoded_here(predictor, debug_bundle):
    """The predictor's text and mask equal the model's plain tensors decoded and upsampled by
    hand here: ids cut at the first <|im_end|> / <|endoftext|>, bilinear logits > 0."""
    [res] = predictor.predict(synthetic_image(), [{"box": BOX}], tasks=["category"])
    tok = debug_bundle.tokenizer
    batch = PAMCollator(debug_bundle.processor, for_generation=True)([image_sample("r", {"box": np.asarray(BOX)})])
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    out = debug_bundle.model.generate(**batch, max_new_tokens=4, eos_token_id=eos, pad_token_id=tok.pad_token_id)
    ids = out.sequences[0].tolist()
    ids = ids[: next((i for i, t in enumerate(ids) if t in eos), len(ids))]
    low = out.mask_logits[0][None].float()  # (1, 1, h, w)
    mask = torch.nn.functional.interpolate(low, size=(200, 300), mode="bilinear", align_corners=False)[0, 0] > 0
    assert res.texts["category"] == tok.decode(ids, skip_special_tokens=True).strip()
    assert np.array_equal(res.mask, mask.numpy()) and res.score == pytest.approx(float(out.scores[0]), abs=0)


def test_mixed_max_new_tokens_in_one_batch_equal_single_calls(debug_bundle):
    """One batch whose items stop at different limits gives each item what it gets alone."""
    sampled = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(max_new_tokens=6))  # greedy
    image = synthetic_image()
    requests = [
        RegionRequest(region={"box": BOX}, image=image, task="detailed_caption", max_new_tokens=n) for n in (1, 6, 3)
    ]
    together = sampled.generate(requests)
    assert [len(r.token_ids) <= n for r, n in zip(together, (1, 6, 3))] == [True] * 3
    for request, joint in zip(requests, together):
        [alone] = sampled.generate([request])
        assert (joint.text, joint.token_ids, joint.finish_reason) == (alone.text, alone.token_ids, alone.finish_reason)
    assert len(together[1].token_ids) > 3  # the limits did cut something, so equality means something
    assert (
        together[0].finish_reason == ("length" if together[0].token_ids else "stop") and len(together[0].token_ids) <= 1
    )


BAD_REGIONS = [
    ({"box": [1, 2]}, r"region 0: box must be \[x0, y0, x1, y1\] \(4 numbers\)"),
    ({"box": [50, 40, 20, 130]}, r"region 0: box .* needs x0 < x1"),
    ({"box": [50, 40, 350, 130]}, r"region 0: box .* outside the 300x200 image"),
    ({"points": [[10, 10], [310, 20]]}, r"region 0: point\(s\) \[\[310.0, 20.0\]\] outside"),
    (
        {"points": [[10, 10]], "labels": [1, 1]},
        r"region 0: labels must be 1 values of 1 \(positive\) or 0 \(negative\), one per point",
    ),
    ({"box": [True, 2, 30, 40]}, "region 0: box must be numbers"),
    ({"mask": np.zeros((200, 300), bool)}, "region 0: mask is empty"),
    ({"mask": np.ones((100, 300), bool)}, r"region 0: mask has shape \(100, 300\)"),
    ({}, "region 0: give points, a box or a mask"),
    ({"bbox": [1, 2, 3, 4]}, "region 0: unknown field"),
]


@pytest.mark.parametrize("region,message", BAD_REGIONS)
def test_bad_regions_raise_typed_errors_before_model_work(predictor, monkeypatch, region, message):
    monkeypatch.setattr(predictor.model, "generate", lambda **_: pytest.fail("the model ran"))
    with pytest.raises(RegionError, match=message):
        predictor.predict(synthetic_image(), [region], tasks=["category"])


def test_bad_images_tasks_and_languages(predictor, tmp_path):
    with pytest.raises(ImageInputError, match="expected a uint8 image"):
        predictor.predict(np.zeros((10, 10, 3), np.float32), [{"box": [1, 1, 5, 5]}])
    with pytest.raises(ImageInputError, match=r"expected \(H, W\)"):
        predictor.predict(np.zeros((10, 10, 5), np.uint8), [{"box": [1, 1, 5, 5]}])
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="not a readable image"):
        predictor.predict(tmp_path / "x.png", [{"box": [1, 1, 5, 5]}])
    with pytest.raises(TaskError, match="unknown task 'caption'"):
        predictor.predict(synthetic_image(), [{"box": BOX}], tasks=["caption"])
    with pytest.raises(TaskError, match="unknown language 'fr'"):
        predictor.predict(synthetic_image(), [{"box": BOX}], language="fr")
    with pytest.raises(RegionError, match=r"image 1 region 0: box must be \[x0, y0, x1, y1\] \(4 numbers\)"):
        predictor.predict_batch([(synthetic_image(), [{"box": BOX}]), (synthetic_image(), [{"box": [1, 2, 3]}])])
    # a grey image is RGB-convertible
    assert predictor.predict(synthetic_image()[..., 0], [{"box": BOX}], tasks=["category"])[0].mask.shape == (200, 300)


def test_parse_fields():
    assert parse_fields("explain", "Tomato. Definition: a red edible fruit. Function: eaten raw or cooked.") == {
        "category": "Tomato",
        "definition": "a red edible fruit",
        "function": "eaten raw or cooked",
    }
    assert parse_fields("explain", "番茄。定义：一种红色的果实。", "zh") == {
        "category": "番茄",
        "definition": "一种红色的果实",
        "function": None,
    }
    assert parse_fields("explain", "no structure") == {"category": None, "definition": None, "function": None}
    assert parse_fields("category", "lemon.") == {"category": "lemon"}
    assert parse_fields("detailed_caption", " A cup. ") == {"caption": "A cup."}


def _moving_square_masks(n: int, turn: int, size: int = 64) -> list[np.ndarray]:
    """A square moving right until frame ``turn``, then down."""
    out = []
    for t in range(n):
        x, y = min(t, turn) * 3, max(0, t - turn) * 3
        m = np.zeros((size, size), bool)
        m[4 + y : 14 + y, 2 + x : 12 + x] = True
        out.append(m)
    return out


def test_boundary_rule_splits_where_motion_changes():
    det = BoundaryDetector(BoundaryRule(window=3, threshold=0.02, min_event_frames=4))
    found = []
    for m in _moving_square_masks(24, turn=11):
        det.push(m)
        found += det.pop()
    found += det.finish()
    assert [b for b, _ in found] == [12]  # the turn is at frame 11; the new event starts at 12
    assert det.scores[11] == max(det.scores.values())
    # constant motion: no boundary; fixed windows cut every max_event_frames
    det = BoundaryDetector(BoundaryRule())
    for m in _moving_square_masks(20, turn=100):
        det.push(m)
    assert det.pop() + det.finish() == []
    det = BoundaryDetector(BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=5))
    for m in _moving_square_masks(12, turn=100):
        det.push(m)
    assert [b for b, _ in det.pop()] == [5, 10]


def _video(num_frames: int, h: int = 64, w: int = 96) -> np.ndarray:
    rng = np.random.RandomState(0)
    frames = (rng.rand(num_frames, h, w, 3) * 60).astype(np.uint8)
    for t in range(num_frames):
        frames[t, 16:40, 8 + 6 * t : 32 + 6 * t] = (230, 40, 40)
    return frames


def test_stream_carries_one_tracking_state_and_history(predictor, monkeypatch):
    """Fixed windows: one SAM 2 state for the whole clip (tracked masks equal a single track_video
    call), each event captioned with the previous caption in its prompt."""
    frames = _video(3)
    sam2 = predictor.model.sam2
    states = []
    original = sam2.model.init_state_from_frames
    monkeypatch.setattr(sam2.model, "init_state_from_frames", lambda f, **k: states.append(len(f)) or original(f, **k))
    prompts = []
    original_tokenize = predictor.processor.tokenize
    monkeypatch.setattr(
        predictor.processor,
        "tokenize",
        lambda turns, **k: prompts.append(turns[0]["content"]) or original_tokenize(turns, **k),
    )
    events = list(
        predictor.stream(
            frames,
            {"box": [8, 16, 32, 40]},
            boundaries=BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=2),
        )
    )
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 1), (2, 2)]
    assert states == [3]  # one tracking state over all 3 frames
    assert prompts[0].endswith("Previous caption: None")
    assert [p.split("Previous caption: ")[1] for p in prompts[1:]] == [events[0].caption or "None"]
    proc = predictor.processor
    ref = sam2.track_video(
        proc.preprocess_video(frames), proc.region_prompt({"box": np.array([8.0, 16, 32, 40])}, (64, 96)), keep=[0]
    )
    streamed = np.concatenate([e.masks for e in events])
    for t in range(3):
        low = ref["mask_logits"][t].reshape(1, 1, *ref["mask_logits"][t].shape[-2:]).float()
        assert np.array_equal(
            streamed[t],
            (
                torch.nn.functional.interpolate(low, size=(64, 96), mode="bilinear", align_corners=False)[0, 0] > 0
            ).numpy(),
        )


def test_mask_to_box_overlay_and_contour():
    m = region_mask()
    assert mask_to_box(m).tolist() == [50, 40, 190, 130]
    assert mask_to_box(np.zeros((4, 4), bool)) is None
    img = overlay(synthetic_image(), m, color=(0, 0, 255), alpha=1.0, box=[50, 40, 190, 130])
    arr = np.asarray(img)
    assert tuple(arr[80, 100]) == (0, 0, 255) and tuple(arr[5, 5]) == tuple(synthetic_image()[5, 5])
    edge = contour(m)
    assert edge[40, 100] and edge[129, 100] and not edge[80, 100] and edge.sum() == 2 * (140 + 90) - 4


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
