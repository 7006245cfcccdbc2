"""The server under random requests (hypothesis): random JSON bodies, images of every mode and
size as data URLs, random regions, tasks and settings. Each answer is a 200 with one choice per
region or a 4xx JSON error naming the parameter, never a 500; afterwards a good request is served."""
# ruff: noqa: E402  (imports after the importorskip checks)

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx")

from PIL import Image

from pam.serve.app import create_app
from pam.serve.engine import Engine, random_debug_bundle
from pam.serve.server import BackgroundServer

from .test_reliability_fuzz import SCALE, regions, valid_regions

COUNTS: dict[str, int] = {}
SERVER = settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def server():
    engine = Engine(random_debug_bundle(seed=0), max_new_tokens=2, model_name="pam-fuzz")
    with BackgroundServer(create_app(engine, max_batch_size=4, max_wait_ms=0, max_body_mb=2)) as url:
        yield url
    print(f"\nhypothesis examples, server: {COUNTS}")


def _png(arr: np.ndarray, mode: str | None = None) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG") if mode else Image.fromarray(arr).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@st.composite
def image_urls(draw, valid: bool = False):
    h, w = draw(
        st.one_of(
            st.tuples(st.integers(1, 6), st.integers(1, 6)),
            st.tuples(st.integers(16, 120), st.integers(16, 120)),
            st.sampled_from([(1, 900), (700, 3)]),
        )
    )
    base = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 256, (h, w, 3), dtype=np.uint8)
    kind = draw(st.sampled_from(["rgb", "grey", "rgba"] + ([] if valid else ["i16", "junk", "not_data_url", "empty"])))
    if kind == "grey":
        return _png(base[..., 0]), (h, w)
    if kind == "rgba":
        return _png(np.concatenate([base, np.full((h, w, 1), 255, np.uint8)], 2)), (h, w)
    if kind == "i16":
        return _png((base[..., 0].astype(np.uint16) * 257), "I;16"), (h, w)
    if kind == "junk":
        return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode(), (h, w)
    if kind == "not_data_url":
        return draw(st.sampled_from(["http://10.0.0.1/a.png", "file:///etc/passwd", "", "data:,"])), (h, w)
    if kind == "empty":
        return "data:image/png;base64,", (h, w)
    return _png(base), (h, w)


def _json_safe(region: dict) -> dict:
    out = {}
    for k, v in region.items():
        if isinstance(v, np.ndarray):
            v = v.astype(int).tolist()  # a dense mask as nested lists: the server wants RLE, so this is a bad field
        if isinstance(v, float) and not np.isfinite(v):
            v = str(v)
        if isinstance(v, list):
            v = [
                [str(x) if isinstance(x, float) and not np.isfinite(x) else x for x in p]
                if isinstance(p, list)
                else (str(p) if isinstance(p, float) and not np.isfinite(p) else p)
                for p in v
            ]
        out["point_labels" if k == "labels" else k] = v
    return out


@SERVER
@given(data=st.data())
def test_random_requests_get_200_or_a_named_4xx_never_500(server, data):
    good = data.draw(st.integers(0, 9)) < 5  # well-formed requests over valid image modes and sizes, else anything
    url, (h, w) = data.draw(image_urls(valid=good))
    regs = [
        _json_safe({k: v for k, v in data.draw(valid_regions(h, w) if good else regions(h, w)).items() if k != "mask"})
        for _ in range(data.draw(st.integers(0 if not good else 1, 3)))
    ]
    text = data.draw(
        st.sampled_from(
            ["category", "short_caption", "detailed_caption"] + ([] if good else ["", "x" * 5000, "<|im_start|>"])
        )
    )
    body = {
        "model": "pam",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
            }
        ],
        "max_tokens": data.draw(st.sampled_from([1, 2] if good else [1, 0, -3, "many"])),
        "regions": regs,
    }
    for key, value in (
        {}
        if good
        else data.draw(
            st.dictionaries(
                st.sampled_from(["task", "language", "temperature", "n", "stream", "extra"]),
                st.sampled_from(["category", "en", "zh", 0.5, -1, True, None, [1]]),
                max_size=2,
            )
        ).items()
    ):
        body[key] = value
    r = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code != 500 and r.status_code < 500, (body, r.text[:500])
    payload = r.json()
    if r.status_code == 200:
        assert len(payload["choices"]) == len(regs)
    else:
        assert 400 <= r.status_code < 500 and payload["error"]["message"], payload
        assert payload["error"].get("param") or r.status_code != 400, payload
    COUNTS[str(r.status_code)] = COUNTS.get(str(r.status_code), 0) + 1


def test_the_server_still_serves_after_the_fuzzing(server):
    url = _png(np.full((64, 64, 3), 120, np.uint8))
    body = {
        "model": "pam",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "category"}],
            }
        ],
        "max_tokens": 2,
        "regions": [{"box": [4, 4, 40, 40]}],
    }
    r = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200 and len(r.json()["choices"]) == 1
