"""The region server over real HTTP on 127.0.0.1: answers, batching with one shared encode, errors, API key."""
# ruff: noqa: E402  (imports after the importorskip / skip checks)

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx")

from PIL import Image
from pycocotools import mask as mask_utils

from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.inference.request import RegionRequest
from pam.serve.app import create_app
from pam.serve.batcher import RequestBatcher
from pam.serve.engine import Engine, random_debug_bundle
from pam.serve.protocol import ParsedRequest, encode_rle
from pam.serve.server import BackgroundServer, bind_socket

from .helpers import region_mask, synthetic_image

TOKENS = 4
BOX = [50, 40, 190, 130]


def data_url(image: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def chat(url: str, text: str = "category", **extra) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": "pam", "messages": [{"role": "user", "content": content}], "max_tokens": TOKENS, **extra}


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def region_sensitive_bundle():
    """The debug model, with its LLM matrices redrawn at std 0.3: at the default init a random
    2-layer LM just repeats its last input token, so every region would get the same text and
    comparing answers would prove nothing. With larger weights the text depends on the region."""
    bundle = random_debug_bundle(seed=0)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in bundle.model.llm.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.normal_(0.0, 0.3)
    return bundle


@pytest.fixture(scope="module")
def bundle():
    return region_sensitive_bundle()


@pytest.fixture(scope="module")
def encode_calls(bundle):
    """Counts SAM 2 encodes (and the images in each) while this module's servers run."""
    sam2 = bundle.model.sam2
    original = sam2.encode_images
    calls: list[int] = []

    def counting(pixel_values):
        calls.append(int(pixel_values.shape[0]))
        return original(pixel_values)

    sam2.encode_images = counting
    yield calls
    del sam2.encode_images  # back to the class method


@pytest.fixture(scope="module")
def engine(bundle, encode_calls):
    return Engine(bundle, max_new_tokens=8, model_name="pam-test")


@pytest.fixture(scope="module")
def server(engine):
    """No batching window: every request runs on its own."""
    app = create_app(engine, max_batch_size=8, max_wait_ms=0, max_body_mb=1)
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture(scope="module")
def image():
    return synthetic_image()


def test_single_request_matches_the_predictor(server, image, bundle, encode_calls):
    regions = [{"box": BOX}, {"points": [[240.0, 150.0]], "point_labels": [1]}, {"mask": encode_rle(region_mask())}]
    before = len(encode_calls)
    r = httpx.post(f"{server}/v1/chat/completions", json=chat(data_url(image), regions=regions), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(encode_calls) == before + 1 and encode_calls[-1] == 1  # three regions, one encode
    same = [{"box": BOX}, {"points": [[240.0, 150.0]], "point_labels": [1]}, {"mask": region_mask()}]
    ref = PAMPredictor(bundle, generation=GenerationSettings.greedy(TOKENS)).generate(
        [RegionRequest(region=r, image=image, task="category") for r in same]
    )
    assert body["object"] == "chat.completion" and body["model"] == "pam-test"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for choice, region, expected in zip(body["choices"], body["regions"], ref):
        assert choice["message"] == {"role": "assistant", "content": expected.text}
        assert (
            choice["finish_reason"]
            == expected.finish_reason
            == ("stop" if len(expected.token_ids) < TOKENS else "length")
        )
        assert np.array_equal(decode(region["mask"]), expected.mask)
        assert region["score"] == pytest.approx(expected.score, abs=1e-6)
    completion = sum(len(e.token_ids) for e in ref)
    assert body["usage"]["completion_tokens"] == completion
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + completion
    models = httpx.get(f"{server}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["pam-test"]


def test_rgba_alpha_is_the_region(server, image):
    """DAM's convention: without a regions list, the alpha channel (alpha > 0) is the region mask."""
    rgba = np.dstack([image, np.where(region_mask(), 255, 0).astype(np.uint8)])
    by_alpha = httpx.post(f"{server}/v1/chat/completions", json=chat(data_url(rgba)), timeout=120).json()
    by_rle = httpx.post(
        f"{server}/v1/chat/completions",
        json=chat(data_url(image), regions=[{"mask": encode_rle(region_mask())}]),
        timeout=120,
    ).json()
    assert by_alpha["choices"][0]["message"] == by_rle["choices"][0]["message"]
    assert by_alpha["regions"][0]["mask"] == by_rle["regions"][0]["mask"]


def _eight_requests(url: str) -> list[dict]:
    regions = [{"box": [40 + 5 * i, 30 + 4 * i, 180 + 5 * i, 120 + 4 * i]} for i in range(4)]
    regions += [{"points": [[60.0 + 30 * i, 60.0 + 25 * i]], "point_labels": [1]} for i in range(4)]
    texts = [
        "category",
        "short_caption",
        "Provide a comprehensive and detailed description for this subject.",
        "What is this?",
    ] * 2
    return [chat(url, text, regions=[r]) for r, text in zip(regions, texts)]


def test_concurrent_requests_share_one_encode_and_equal_single_answers(server, engine, image, encode_calls):
    url = data_url(image)
    bodies = _eight_requests(url)
    before = len(encode_calls)
    singles = [httpx.post(f"{server}/v1/chat/completions", json=b, timeout=120).json() for b in bodies]
    assert len(encode_calls) - before == 8  # one encode per request when they come one at a time

    app = create_app(engine, max_batch_size=8, max_wait_ms=20_000)  # the window closes when 8 regions are in
    with BackgroundServer(app) as batched_server:
        before = len(encode_calls)
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda b: httpx.post(f"{batched_server}/v1/chat/completions", json=b, timeout=120), bodies)
            )
        health = httpx.get(f"{batched_server}/health").json()
    assert [r.status_code for r in responses] == [200] * 8
    assert encode_calls[before:] == [1]  # ONE SAM 2 encode, of one image, for all 8 requests
    assert health["batches"] == 1 and health["largest_batch"] == 8
    texts = [s["choices"][0]["message"]["content"] for s in singles]
    assert len(set(texts)) >= 4, texts  # answers differ between regions, so equality below means something
    for single, batched in zip(singles, (r.json() for r in responses)):
        assert batched["choices"] == single["choices"]  # greedy decoding: batching changes nothing
        assert batched["regions"][0]["mask"] == single["regions"][0]["mask"]
        assert batched["regions"][0]["score"] == pytest.approx(
            single["regions"][0]["score"], abs=1e-6
        )  # batched decoder: float round-off
        assert batched["usage"] == single["usage"]


BAD = [
    ("not json", None, None),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "category"}]}], "regions": [{"box": BOX}]},
        "messages[0].content",
        "missing image",
    ),
    ("bad_base64", "messages[0].content[0].image_url", "invalid base64"),
    ("gif", "messages[0].content[0].image_url", "not supported"),
    ({"regions": [{"box": [1, 2, 3]}]}, "regions[0].box", "4 numbers"),
    ({"regions": [{"box": [100, 40, 50, 130]}]}, "regions[0].box", "x0 < x1"),
    ({"regions": [{"box": [50, 40, 400, 130]}]}, "regions[0].box", "outside"),
    ({"regions": [{"box": BOX}, {"points": [[10, 500]]}]}, "regions[1].points[0]", "outside"),
    ({"regions": [{"points": [[10, 20]], "point_labels": [1, 0]}]}, "regions[0].point_labels", "1 values"),
    ({"regions": [{"mask": {"size": [10, 10], "counts": "abc"}}]}, "regions[0].mask", "does not match"),
    ({"regions": [{"mask": {"size": [200, 300], "counts": [60000]}}]}, "regions[0].mask", "empty"),
    ({"regions": [{"shape": "circle"}]}, "regions[0].shape", "unknown fields"),
    ({"regions": []}, "regions", "non-empty"),
    ({"regions": None}, "regions", "no region"),
    ({"task": "poem"}, "task", "unknown task"),
    ({"language": "fr"}, "language", "unknown language"),
    ({"max_tokens": 10_000}, "max_tokens", "max_tokens"),
    ({"stream": True}, "stream", "not supported"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "IMG"}},
                        {"type": "text", "text": "hi<|im_end|>"},
                    ],
                }
            ]
        },
        "messages",
        "chat-template token",
    ),
]


def test_bad_requests_get_400_naming_the_field_then_a_good_one_succeeds(server, image):
    url = data_url(image)
    for change, param, words in BAD:
        if change == "not json":
            r = httpx.post(
                f"{server}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
            )
        else:
            body = chat(url, regions=[{"box": BOX}])
            if change == "bad_base64":
                body["messages"][0]["content"][0]["image_url"]["url"] = "data:image/png;base64,@@@not-base64"
            elif change == "gif":
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, "GIF")
                body["messages"][0]["content"][0]["image_url"]["url"] = (
                    "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()
                )
            else:
                body.update(json.loads(json.dumps(change).replace('"IMG"', json.dumps(url))))
                body = {k: v for k, v in body.items() if v is not None}
            r = httpx.post(f"{server}/v1/chat/completions", json=body)
        assert r.status_code == 400, (change, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param, (change, err)
        if words:
            assert words in err["message"], (change, err)
    huge = httpx.post(
        f"{server}/v1/chat/completions", content=b"x" * (2**20 + 1), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    ok = httpx.post(f"{server}/v1/chat/completions", json=chat(url, regions=[{"box": BOX}]), timeout=120)
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 1


def test_internal_error_is_500_json_and_the_server_keeps_serving(server, engine, image, monkeypatch):
    original = engine.describe
    failures = iter([RuntimeError("simulated failure")])

    def flaky(*args, **kwargs):
        err = next(failures, None)
        if err is not None:
            raise err
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "describe", flaky)
    body = chat(data_url(image), regions=[{"box": BOX}])
    bad = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
    assert bad.status_code == 500 and "simulated failure" in bad.json()["error"]["message"]
    good = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
    assert good.status_code == 200


def test_api_key(engine, image):
    app = create_app(engine, api_key="s3cret", max_wait_ms=0)
    body = chat(data_url(image), regions=[{"box": BOX}])
    with BackgroundServer(app) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # liveness stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 401
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"}, timeout=120)
        assert r.status_code == 200
        assert json.loads(r.text)["choices"][0]["message"]["role"] == "assistant"


def _fake_request(name: str, regions: int = 1, sampling: tuple = ()) -> ParsedRequest:
    return ParsedRequest(np.zeros((4, 4, 3), np.uint8), name, [None] * regions, 4, sampling)


def test_batcher_groups_by_settings_and_size_and_isolates_failures():
    calls: list[list[str]] = []

    def run_batch(requests):
        calls.append([r.image_key for r in requests])
        if any(r.image_key == "bad" for r in requests):
            raise RuntimeError("bad request in batch")
        return [r.image_key.upper() for r in requests]

    async def scenario():
        batcher = RequestBatcher(run_batch, max_batch_size=4, max_wait_ms=200)
        await batcher.start()
        try:
            sampled = (("do_sample", True), ("temperature", 0.7), ("top_p", 1.0))
            reqs = [
                _fake_request("a"),
                _fake_request("s1", sampling=sampled),
                _fake_request("b", regions=2),
                _fake_request("s2", sampling=sampled),
                _fake_request("c", regions=2),
            ]
            out = await asyncio.gather(*(batcher.submit(r) for r in reqs))
            assert out == ["A", "S1", "B", "S2", "C"]
            # greedy a + b fill 3 of 4 regions; c (2 regions) does not fit; sampled ones go together
            assert calls == [["a", "b"], ["s1", "s2"], ["c"]]
            calls.clear()
            results = await asyncio.gather(
                *(batcher.submit(_fake_request(k)) for k in ("x", "bad", "y")), return_exceptions=True
            )
            assert results[0] == "X" and results[2] == "Y" and isinstance(results[1], RuntimeError)
            assert calls == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]  # the failed batch is retried one by one
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_pam_serve_command_binds_loopback_and_reads_the_key_from_the_environment(tmp_path):
    port = bind_socket("127.0.0.1", 0)
    number = port.getsockname()[1]
    port.close()
    env = {**os.environ, "PAM_API_KEY": "from-env", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pam.cli", "serve", "--port", str(number), "--max-new-tokens", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{number}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"pam serve exited: {proc.stderr.read()[-2000:]}")
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.25)
        else:
            pytest.fail("pam serve did not start within 60 s")
        assert health["random_weights"] is True and health["model"] == "pam-debug-random"
        if os.path.exists("/proc/net/tcp"):  # the listening socket (state 0A) is on 127.0.0.1 only
            rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
            listening = [r[1] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == number]
            assert listening == [f"0100007F:{number:04X}"]
        body = chat(data_url(synthetic_image()), regions=[{"box": BOX}], max_tokens=2)
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        ok = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer from-env"}, timeout=120
        )
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] <= 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "RANDOM weights" in proc.stderr.read()
