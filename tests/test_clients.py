"""pam.clients against a real chat-completions server on 127.0.0.1, and a tiny local Qwen2."""

from __future__ import annotations

import pytest

from pam.clients import (
    CachedChatBackend,
    ChatHTTPError,
    ChatResponseError,
    ChatRetriesExhausted,
    OpenAIChatBackend,
    TokenBucket,
    cache_key,
    complete_many,
    image_part,
    text_part,
)

from .helpers.chat_server import ChatServer, Fault, last_user_text
from .helpers.tiny_chat_models import save_tiny_qwen_vl

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "name the object"}]


def echo(request, index):
    return "echo:" + last_user_text(request)


def backend(server, **kw):
    kw.setdefault("backoff_s", 0.01)
    return OpenAIChatBackend(
        base_url=server.base_url, model="judge-1", api_key_env=None, timeout_s=kw.pop("timeout_s", 5.0), **kw
    )


def test_answer_body_and_usage():
    with ChatServer(echo, usage=(12, 7)) as server:
        client = backend(server)
        parts = [
            {
                "role": "user",
                "content": [text_part("what is [1]?"), image_part(__import__("numpy").zeros((4, 4, 3), "uint8"))],
            }
        ]
        assert client.complete(MSG, max_tokens=20, temperature=0) == "echo:name the object"
        assert client.complete(parts) == "echo:what is [1]?"
    first = server.requests[0]
    assert (
        first["model"] == "judge-1"
        and first["messages"] == MSG
        and first["max_tokens"] == 20
        and first["temperature"] == 0
    )
    assert server.requests[1]["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert client.usage.as_dict() == {
        "requests": 2,
        "retries": 0,
        "prompt_tokens": 24,
        "completion_tokens": 14,
        "cache_hits": 0,
        "total_tokens": 38,
    }


def test_500_then_success_is_retried():
    with ChatServer(lambda r, i: Fault(500) if i == 0 else "ok") as server:
        client = backend(server)
        assert client.complete(MSG) == "ok"
    assert server.count == 2 and client.usage.retries == 1 and client.usage.requests == 1


def test_429_backs_off_exponentially_and_honours_retry_after():
    with ChatServer(lambda r, i: Fault(429) if i < 2 else "ok") as server:
        client = backend(server, backoff_s=0.15)
        assert client.complete(MSG) == "ok"
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert gaps[0] >= 0.15 * 0.9 and gaps[1] >= 0.30 * 0.9  # 0.15 s, then doubled
    with ChatServer(lambda r, i: Fault(429, headers={"Retry-After": "0.4"}) if i == 0 else "ok") as server:
        backend(server, backoff_s=0.01).complete(MSG)
    assert server.times[1] - server.times[0] >= 0.4 * 0.9


def test_timeout_is_retried():
    with ChatServer(lambda r, i: Fault(200, delay_s=1.5, text="late") if i == 0 else "fast") as server:
        client = backend(server, timeout_s=0.3)
        assert client.complete(MSG) == "fast"
    assert server.count == 2 and client.usage.retries == 1


def test_gives_up_after_max_tries_and_does_not_retry_client_errors():
    with ChatServer(lambda r, i: Fault(503)) as server:
        with pytest.raises(ChatRetriesExhausted, match="3 tries; last error: HTTP 503"):
            backend(server, max_tries=3).complete(MSG)
    assert server.count == 3
    with ChatServer(lambda r, i: Fault(400)) as server:
        with pytest.raises(ChatHTTPError, match="HTTP 400"):
            backend(server, max_tries=3).complete(MSG)
    assert server.count == 1


def test_connection_refused_and_bad_response_and_missing_key(monkeypatch):
    with ChatServer(echo) as server:
        url = server.base_url
    dead = OpenAIChatBackend(base_url=url, model="m", api_key_env=None, max_tries=2, backoff_s=0.01, timeout_s=1)
    with pytest.raises(ChatRetriesExhausted, match="connection error"):
        dead.complete(MSG)
    with ChatServer(echo) as server:
        bad = OpenAIChatBackend(base_url=server.base_url.replace("/v1", "/v2"), model="m", api_key_env=None)
        with pytest.raises(ChatHTTPError, match="HTTP 404"):
            bad.complete(MSG)
    monkeypatch.delenv("PAM_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="PAM_TEST_KEY"):
        OpenAIChatBackend(base_url="http://127.0.0.1:1/v1", model="m", api_key_env="PAM_TEST_KEY")
    client = OpenAIChatBackend(base_url="http://127.0.0.1:1/v1", model="m", api_key_env=None)
    with pytest.raises(ChatResponseError, match="not a chat-completions response"):
        client._parse(b'{"choices": []}')


def test_cache_hit_sends_no_second_request(tmp_path):
    with ChatServer(echo) as server:
        cached = CachedChatBackend(backend(server), tmp_path / "cache")
        assert cached.complete(MSG, max_tokens=5) == "echo:name the object"
        assert cached.complete(MSG, max_tokens=5) == "echo:name the object"
        again = CachedChatBackend(backend(server), tmp_path / "cache")  # a re-run: new process, same folder
        assert again.complete(MSG, max_tokens=5) == "echo:name the object"
        assert server.count == 1
        cached.complete(MSG, max_tokens=6)  # other params: another key
        assert server.count == 2
    assert cached.usage.cache_hits == 1 and again.usage.cache_hits == 1
    key = cache_key("judge-1", MSG, {"max_tokens": 5})
    assert (tmp_path / "cache" / key[:2] / f"{key}.json").is_file()
    assert key != cache_key("judge-2", MSG, {"max_tokens": 5})


def test_cache_asks_once_under_concurrent_threads(tmp_path):
    with ChatServer(lambda r, i: Fault(200, delay_s=0.2, text="slow")) as server:
        cached = CachedChatBackend(backend(server), tmp_path)
        results = complete_many(cached, [MSG] * 6, max_workers=6)
    assert results == ["slow"] * 6 and server.count == 1 and cached.usage.cache_hits == 5


def test_rate_limit_spaces_requests():
    with ChatServer(echo) as server:
        client = backend(server, requests_per_second=10)
        complete_many(client, [[{"role": "user", "content": str(i)}] for i in range(6)], max_workers=4)
    times = sorted(server.times)
    assert all(b - a >= 0.1 * 0.7 for a, b in zip(times, times[1:])), [
        round(b - a, 3) for a, b in zip(times, times[1:])
    ]
    assert times[-1] - times[0] >= 0.5 * 0.9
    bucket = TokenBucket(per_minute=600, capacity=3)  # burst of 3 passes at once, the 4th waits 0.1 s
    waits = [bucket.acquire() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] >= 0.05


def test_concurrency_preserves_order_and_overlaps():
    n = 8

    def reply(request, index):  # later requests answer sooner
        k = int(last_user_text(request))
        return Fault(200, delay_s=0.05 * (n - k), text=f"answer {k}")

    with ChatServer(reply) as server:
        client = backend(server)
        batch = [[{"role": "user", "content": str(k)}] for k in range(n)]
        import time

        start = time.monotonic()
        results = client.complete_many(batch, max_workers=n)
        elapsed = time.monotonic() - start
    assert results == [f"answer {k}" for k in range(n)]
    assert elapsed < 0.05 * sum(range(1, n + 1)) * 0.6  # serial would take 1.8 s


def test_batch_errors_raise_or_come_back_in_place():
    with ChatServer(lambda r, i: Fault(400) if last_user_text(r) == "1" else "ok") as server:
        client = backend(server)
        batch = [[{"role": "user", "content": str(k)}] for k in range(3)]
        out = complete_many(client, batch, max_workers=3, return_exceptions=True)
        assert out[0] == "ok" and isinstance(out[1], ChatHTTPError) and out[2] == "ok"
        with pytest.raises(ChatHTTPError):
            complete_many(client, batch, max_workers=3)


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from pam.processing.tokenizer import build_debug_tokenizer

    path = tmp_path_factory.mktemp("tiny_qwen")
    tokenizer = build_debug_tokenizer()
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path, tokenizer


def test_transformers_backend_is_greedy_deterministic_and_matches_generate(tiny_qwen):
    import torch
    from transformers import AutoModelForCausalLM

    from pam.clients import TransformersChatBackend

    path, tokenizer = tiny_qwen
    local = TransformersChatBackend(path, kind="text", max_tokens=8)
    first = local.complete(MSG, max_tokens=8)
    assert local.complete(MSG, max_tokens=8) == first
    # the reference: the same prompt through the chat template and model.generate by hand
    ids = tokenizer(
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nname the object<|im_end|>\n<|im_start|>assistant\n",
        return_tensors="pt",
    ).input_ids
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert first == tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    usage = local.usage.as_dict()
    assert (
        usage["requests"] == 2
        and usage["prompt_tokens"] == 2 * ids.shape[1]
        and usage["completion_tokens"] == 2 * (ref.shape[1] - ids.shape[1])
    )
    assert local.complete_many([MSG, MSG], max_workers=2, max_tokens=8) == [first, first]
    with pytest.raises(ValueError, match="text-only model"):
        local.complete([{"role": "user", "content": [image_part(__import__("numpy").zeros((2, 2, 3), "uint8"))]}])
    with pytest.raises(ValueError, match="does not support parameters"):
        local.complete(MSG, frequency_penalty=1.0)


def test_transformers_backend_rejects_missing_folder_and_template(tmp_path, tiny_qwen):
    import shutil

    from pam.clients import TransformersChatBackend

    with pytest.raises(FileNotFoundError, match="model folder not found"):
        TransformersChatBackend(tmp_path / "nope")
    path, tokenizer = tiny_qwen
    copy = tmp_path / "no_template"
    shutil.copytree(path, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    import json

    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no chat_template"):
        TransformersChatBackend(copy)


@pytest.fixture(scope="module")
def tiny_qwen_vl(tmp_path_factory):
    return save_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_qwen_vl"))


def test_transformers_backend_vision_model_gets_the_image(tiny_qwen_vl):
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pam.clients import TransformersChatBackend

    image = np.random.RandomState(0).randint(0, 255, (60, 80, 3), np.uint8)
    messages = [{"role": "user", "content": [text_part("what is [1]?"), image_part(image)]}]
    local = TransformersChatBackend(tiny_qwen_vl, kind="vision", max_tokens=6)
    first = local.complete(messages)
    assert local.complete(messages) == first
    # the reference: the processor and generate by hand, on the decoded PNG (lossless)
    processor = AutoProcessor.from_pretrained(tiny_qwen_vl)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen_vl).eval()
    inputs = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is [1]?"},
                    {"type": "image", "image": Image.fromarray(image)},
                ],
            }
        ],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert image_tokens == int(inputs["image_grid_thw"].prod()) // 4 > 1  # the picture is in the prompt
    with torch.no_grad():
        ref = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    n = inputs["input_ids"].shape[1]
    assert first == processor.tokenizer.decode(ref[0, n:], skip_special_tokens=True)
    assert local.usage.prompt_tokens == 2 * n
