"""Bad input to the public inference API, found by hypothesis: random images (grey, RGB, RGBA,
16-bit, float, empty, tiny, huge, extreme aspect ratios), random regions (boxes, points, labels,
masks, unknown fields, empty and huge point lists) and tasks. Every call either returns one
prediction per region, with a mask of the image's size, or raises a ValueError subclass whose
message names the offending input; never an error from inside torch or numpy.

Examples per test are few (a model call costs up to a second here); ``PAM_FUZZ_EXAMPLES`` raises them.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.inference.regions import ImageInputError, Region, RegionError, load_rgb

SCALE = int(os.environ.get("PAM_FUZZ_EXAMPLES", "1"))
FAST = settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
MODEL = settings(max_examples=20 * SCALE, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
COUNTS: dict[str, dict[str, int]] = {}


def count(api: str, outcome: str) -> None:
    COUNTS.setdefault(api, {}).setdefault(outcome, 0)
    COUNTS[api][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print(f"\nhypothesis examples per API: {COUNTS}")


# ----------------------------------------------------------------------------------- strategies
SIZES = st.one_of(
    st.tuples(st.integers(1, 8), st.integers(1, 8)),  # tiny
    st.tuples(st.integers(16, 96), st.integers(16, 96)),
    st.sampled_from([(1, 1500), (1500, 1), (2048, 48), (0, 10), (10, 0)]),  # huge sides, extreme ratios, empty
)
MODES = st.sampled_from(
    [
        "grey",
        "rgb",
        "rgba",
        "grey1",
        "uint16",
        "uint16_small",
        "float",
        "bool",
        "int_negative",
        "4d",
        "pil_rgba",
        "pil_i16",
    ]
)


@st.composite
def images(draw):
    h, w = draw(SIZES)
    mode = draw(MODES)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mode == "grey":
        return base[..., 0]
    if mode == "rgba":
        return np.concatenate([base, base[..., :1]], axis=2)
    if mode == "grey1":
        return base[..., :1]
    if mode == "uint16":
        return base.astype(np.uint16) * 257
    if mode == "uint16_small":
        return base.astype(np.uint16)  # 16-bit container, 8-bit values
    if mode == "float":
        return base.astype(np.float32) / 255
    if mode == "bool":
        return base > 127
    if mode == "int_negative":
        return base.astype(np.int16) - 128
    if mode == "4d":
        return base[None]
    from PIL import Image

    if h == 0 or w == 0:
        return base
    if mode == "pil_rgba":
        return Image.fromarray(np.concatenate([base, base[..., :1]], axis=2), "RGBA")
    if mode == "pil_i16":
        return Image.fromarray(base[..., 0].astype(np.int32) * 200, "I").convert("I;16")
    return base


NUM = st.one_of(st.floats(-50, 3000, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -1e30]))


@st.composite
def regions(draw, h: int, w: int):
    kinds = draw(
        st.sets(st.sampled_from(["box", "points", "mask", "labels", "unknown", "junk_box"]), min_size=0, max_size=3)
    )
    region = {}
    if "box" in kinds:
        if draw(st.booleans()) and h > 1 and w > 1:  # a valid box, usually
            x0, y0 = draw(st.floats(0, w - 1)), draw(st.floats(0, h - 1))
            region["box"] = [
                x0,
                y0,
                draw(st.floats(x0 + 0.5, w)) if x0 + 0.5 <= w else w,
                draw(st.floats(y0 + 0.5, h)) if y0 + 0.5 <= h else h,
            ]
        else:
            region["box"] = draw(st.lists(NUM, min_size=0, max_size=6))
    if "junk_box" in kinds:
        region["box"] = draw(st.sampled_from(["left", None, {"x": 1}, [[1, 2], [3]]]))
    if "points" in kinds:
        n = draw(st.sampled_from([0, 1, 2, 5, 300]))  # empty, few, a huge prompt
        inside = draw(st.booleans())
        region["points"] = [
            [draw(st.floats(0, w)) if inside else draw(NUM), draw(st.floats(0, h)) if inside else draw(NUM)]
            for _ in range(min(n, 5))
        ] * (n // 5 if n >= 5 else 1)
        if not region["points"] and n:
            region["points"] = [[0.0, 0.0]]
    if "labels" in kinds:
        region["labels"] = draw(st.lists(st.sampled_from([0, 1, 2, -1]), min_size=0, max_size=4))
    if "mask" in kinds:
        shape = draw(st.sampled_from([(h, w), (h, w), (h + 1, w), (max(w, 1), max(h, 1)), (3,)]))
        fill = draw(st.sampled_from(["random", "empty", "full", "values"]))
        m = np.zeros(shape, np.uint8)
        if fill == "random":
            m = (np.random.default_rng(0).random(shape) > 0.5).astype(np.uint8)
        elif fill == "full":
            m[...] = 1
        elif fill == "values":
            m = np.full(shape, 7, np.uint8)
        region["mask"] = m
    if "unknown" in kinds:
        region["polygon"] = [1, 2, 3]
    return region


@st.composite
def valid_regions(draw, h: int, w: int):
    """Regions that should be accepted: a box, points (1 to 300: a huge prompt), a mask, or a mix."""
    region = {}
    for kind in draw(st.sets(st.sampled_from(["box", "points", "mask"]), min_size=1, max_size=3)):
        if kind == "box":
            x0, y0 = draw(st.floats(0, w - 0.5)), draw(st.floats(0, h - 0.5))
            region["box"] = [x0, y0, min(w, x0 + draw(st.floats(0.5, w))), min(h, y0 + draw(st.floats(0.5, h)))]
        elif kind == "points":
            n = draw(st.sampled_from([1, 2, 4, 300]))
            pts = np.random.default_rng(draw(st.integers(0, 99))).random((n, 2)) * [w, h]
            region["points"] = pts.tolist()
            region["labels"] = [1] + [draw(st.integers(0, 1))] * (n - 1)
        else:
            m = np.zeros((h, w), bool)
            y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            m[y : y + draw(st.integers(1, h)), x : x + draw(st.integers(1, w))] = True
            region["mask"] = m
    return region


TASKS = st.one_of(
    st.sampled_from(["category", "explain", "short_caption", "detailed_caption"]),
    st.sampled_from(["caption", "", "video_caption"]),
)
LANG = st.sampled_from(["en", "zh", "en", "fr"])

NAMED = re.compile(r"\b(image|region \d+|task|language|regions?)\b")


def assert_typed(err: BaseException) -> None:
    assert isinstance(err, ValueError), f"{type(err).__name__} from deep inside: {err}"
    assert NAMED.search(str(err)), f"error does not name the input: {err}"


def _hw(image) -> tuple[int, int]:
    arr = np.asarray(image)
    return (arr.shape[0], arr.shape[1]) if arr.ndim >= 2 else (0, 0)


# ------------------------------------------------------------------------------------- the tests
@FAST
@given(image=images())
def test_load_rgb_returns_rgb_or_a_typed_error(image):
    try:
        rgb = load_rgb(image)
    except ValueError as e:
        assert isinstance(e, ImageInputError) and "image" in str(e)
        count("load_rgb", "typed error")
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
    count("load_rgb", "result")


@FAST
@given(data=st.data(), hw=st.tuples(st.integers(1, 64), st.integers(1, 64)))
def test_checked_regions_map_into_the_model_frame(debug_bundle, data, hw):
    """Region.checked then the processor: a region that passes validation becomes finite SAM 2
    prompt coordinates inside the model's input square, and a dense mask of the right size."""
    h, w = hw
    raw = data.draw(valid_regions(h, w) if data.draw(st.booleans()) else regions(h, w))
    try:
        region = Region.from_any(raw, "region 0").checked((h, w), "region 0")
    except ValueError as e:
        assert isinstance(e, RegionError) and "region 0" in str(e)
        count("Region.checked + processor", "typed error")
        return
    prompt = debug_bundle.processor.region_prompt(region.prompt_dict(), (h, w))
    s = debug_bundle.processor.image_size
    for t in (prompt.point_coords, prompt.box):
        if t is not None:
            assert torch.isfinite(t).all() and (t >= 0).all() and (t <= s + 1e-3).all()
    if prompt.mask_input is not None:
        assert prompt.mask_input.shape[-2:] == (4 * debug_bundle.model.config.sam2.embedding_size,) * 2
    count("Region.checked + processor", "result")


@pytest.fixture(scope="module")
def predictor(debug_bundle):
    return PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(2), batch_size=4)


GOOD_TASKS = st.lists(
    st.sampled_from(["category", "explain", "short_caption", "detailed_caption"]), min_size=1, max_size=2
)


@MODEL
@given(data=st.data())
def test_predict_returns_predictions_or_a_typed_error(predictor, data):
    if data.draw(st.integers(0, 9)) < 6:  # well-formed calls over every image mode and size that is valid
        h, w = data.draw(
            st.one_of(
                st.tuples(st.integers(1, 8), st.integers(1, 8)),
                st.tuples(st.integers(16, 200), st.integers(16, 200)),
                st.sampled_from([(1, 1500), (1500, 2), (1024, 48)]),
            )
        )
        base = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = data.draw(
            st.sampled_from([base, base[..., 0], np.concatenate([base, base[..., :1]], 2), base.astype(np.uint16)])
        )
        regs = [data.draw(valid_regions(h, w)) for _ in range(data.draw(st.integers(1, 3)))]
        tasks, language = data.draw(GOOD_TASKS), data.draw(st.sampled_from(["en", "zh"]))
    else:  # anything
        image = data.draw(images())
        h, w = _hw(image)
        regs = [data.draw(regions(max(h, 1), max(w, 1))) for _ in range(data.draw(st.integers(0, 3)))]
        tasks, language = data.draw(st.lists(TASKS, min_size=0, max_size=2)), data.draw(LANG)
    h, w = _hw(image)
    n = len(regs)
    try:
        preds = predictor.predict(image, regs, tasks=tasks, language=language)
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError, AttributeError) as e:
        assert_typed(e)
        kind = type(e).__name__
        count("PAMPredictor.predict", f"typed error ({kind})")
        return
    assert len(preds) == n
    for p in preds:
        assert p.mask.shape == (h, w) and set(p.texts) == set(dict.fromkeys(tasks))
    count("PAMPredictor.predict", "result")
