"""Prompt sampling: shares of prompt kinds, points inside the mask, counts, boxes, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pam.data.prompt_sampling import (
    FrameAnnotation,
    PromptSamplingConfig,
    frame_annotation,
    jitter_box,
    make_rng,
    sample_prompt,
)
from pam.data.schema import MaskAnnotation, RegionAnnotation
from pam.data.skips import BadSample
from pam.utils.masks import mask_to_box as mask_box

H, W = 48, 64


def _mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[10:30, 20:45] = True
    m[12:16, 22:26] = False  # a hole: points must avoid it
    return m


def _draws(config: PromptSamplingConfig, ann: FrameAnnotation, n: int = 2000, video: bool = False):
    return [sample_prompt(make_rng(0, 0, i), ann, H, W, video=video, config=config) for i in range(n)]


def test_default_shares_are_half_points_half_boxes():
    ann = FrameAnnotation(mask=_mask(), box=None, points=None, point_labels=None)
    kinds = Counter(kind for kind, _ in _draws(PromptSamplingConfig(), ann))
    assert kinds["mask"] == 0
    assert abs(kinds["points"] / 2000 - 0.5) < 0.04


@pytest.mark.parametrize("weights", [(0.2, 0.5, 0.3), (0.6, 0.1, 0.3), (0.0, 0.0, 1.0)])
def test_configured_shares(weights):
    cfg = PromptSamplingConfig(point_weight=weights[0], box_weight=weights[1], mask_weight=weights[2])
    ann = FrameAnnotation(mask=_mask(), box=None, points=None, point_labels=None)
    draws = _draws(cfg, ann)
    kinds = Counter(kind for kind, _ in draws)
    for kind, share in zip(("points", "box", "mask"), weights):
        assert abs(kinds[kind] / len(draws) - share) < 0.04, (kind, kinds)
    for kind, prompt in draws:
        set_keys = {k for k, v in prompt.items() if v is not None}
        assert set_keys == {"points": {"points", "point_labels"}, "box": {"box"}, "mask": {"mask"}}[kind]


@pytest.mark.parametrize("video, lo, hi", [(False, 1, 4), (True, 1, 3)])
def test_points_inside_mask_with_counts_in_range(video, lo, hi):
    mask = _mask()
    ann = FrameAnnotation(mask=mask, box=None, points=None, point_labels=None)
    counts = Counter()
    for kind, prompt in _draws(PromptSamplingConfig(point_weight=1.0, box_weight=0.0), ann, n=600, video=video):
        pts = prompt["points"]
        assert kind == "points" and pts.dtype == np.float32 and prompt["point_labels"].dtype == np.int64
        assert np.all(prompt["point_labels"] == 1)
        assert mask[pts[:, 1].astype(int), pts[:, 0].astype(int)].all()
        assert len({tuple(p) for p in pts.tolist()}) == len(pts)  # distinct pixels
        counts[len(pts)] += 1
    assert sorted(counts) == list(range(lo, hi + 1))
    for n in counts.values():  # each count about equally often
        assert abs(n / 600 - 1 / (hi - lo + 1)) < 0.07


def test_box_from_mask_is_tight_and_jitter_stays_in_image():
    mask = _mask()
    np.testing.assert_array_equal(mask_box(mask), [20, 10, 45, 30])
    ann = FrameAnnotation(mask=mask, box=None, points=None, point_labels=None)
    _, prompt = sample_prompt(make_rng(0, 0, 0), ann, H, W, video=False, config=PromptSamplingConfig(point_weight=0.0))
    np.testing.assert_array_equal(prompt["box"], [20, 10, 45, 30])
    rng = np.random.default_rng(0)
    moved = [jitter_box(rng, np.array([20, 10, 45, 30], np.float32), H, W, 0.1) for _ in range(300)]
    moved = np.stack(moved)
    assert (moved[:, :2] >= 0).all() and (moved[:, 2] <= W).all() and (moved[:, 3] <= H).all()
    assert np.abs(moved - [20, 10, 45, 30]).max() <= 0.1 * 25 + 1e-4
    assert np.abs(moved - [20, 10, 45, 30]).max() > 1.0  # it did move


def test_without_a_mask_given_points_and_box_are_used():
    ann = FrameAnnotation(
        mask=None,
        box=np.array([1, 2, 11, 22], np.float32),
        points=np.array([[3, 4], [5, 6], [7, 8]], np.float32),
        point_labels=np.array([1, 0, 1]),
    )
    draws = _draws(PromptSamplingConfig(mask_weight=1.0), ann, n=400)
    kinds = Counter(k for k, _ in draws)
    assert kinds["mask"] == 0 and abs(kinds["points"] / 400 - 0.5) < 0.08  # mask share falls back to the others
    for kind, prompt in draws:
        if kind == "box":
            np.testing.assert_array_equal(prompt["box"], [1, 2, 11, 22])
        else:
            pairs = {(tuple(p), int(lab)) for p, lab in zip(prompt["points"].tolist(), prompt["point_labels"])}
            assert pairs <= {((3.0, 4.0), 1), ((5.0, 6.0), 0), ((7.0, 8.0), 1)}


def test_same_seed_epoch_index_gives_the_same_prompt():
    ann = FrameAnnotation(mask=_mask(), box=None, points=None, point_labels=None)
    cfg = PromptSamplingConfig(box_jitter=0.1)
    a = sample_prompt(make_rng(3, 1, 7), ann, H, W, video=False, config=cfg)
    b = sample_prompt(make_rng(3, 1, 7), ann, H, W, video=False, config=cfg)
    assert a[0] == b[0]
    for k in a[1]:
        assert (a[1][k] is None and b[1][k] is None) or np.array_equal(a[1][k], b[1][k])

    def signature(draw):
        kind, prompt = draw
        return kind, prompt["points" if kind == "points" else kind].tobytes()

    by_epoch = {signature(sample_prompt(make_rng(3, e, 7), ann, H, W, video=False, config=cfg)) for e in range(10)}
    assert len(by_epoch) >= 5  # another epoch draws another prompt


def test_frame_annotation_checks():
    rle = MaskAnnotation.from_mask(_mask())
    ok = frame_annotation(RegionAnnotation(masks={0: rle}, boxes={0: [-5.0, -5.0, 20.0, 20.0]}), 0, H, W)
    np.testing.assert_array_equal(ok.box, [0, 0, 15, 15])  # clipped to the image
    cases = [
        (RegionAnnotation(boxes={0: [100.0, 100.0, 5.0, 5.0]}), "box_outside_image"),
        (RegionAnnotation(boxes={0: [1.0, 1.0, 0.0, 5.0]}), "box_outside_image"),
        (RegionAnnotation(points={0: [[70.0, 5.0]]}, point_labels={0: [1]}), "points_outside_image"),
        (RegionAnnotation(masks={0: MaskAnnotation.from_mask(np.zeros((H, W), bool))}), "empty_mask"),
        (RegionAnnotation(masks={0: MaskAnnotation(rle={"size": [H, W], "counts": "%%"})}), "bad_rle"),
        (RegionAnnotation(masks={0: MaskAnnotation.from_mask(np.ones((H + 1, W), bool))}), "mask_size_mismatch"),
        (RegionAnnotation(boxes={1: [1.0, 1.0, 5.0, 5.0]}), "no_prompt"),
    ]
    for region, reason in cases:
        with pytest.raises(BadSample) as err:
            frame_annotation(region, 0, H, W)
        assert err.value.reason == reason


def test_config_validation():
    with pytest.raises(ValueError, match="positive sum"):
        PromptSamplingConfig(point_weight=0, box_weight=0, mask_weight=0)
    with pytest.raises(ValueError, match="min_points_image"):
        PromptSamplingConfig(min_points_image=3, max_points_image=2)
