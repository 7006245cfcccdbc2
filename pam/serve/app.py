"""The OpenAI-compatible HTTP API: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

Response of a chat completion: one choice per region (``message.content`` is the region's text,
``finish_reason`` "stop" or "length"), ``usage`` summed over the regions, and an extra
``regions`` list with each region's mask as COCO RLE (``counts`` a string) and SAM 2's score.
The ``model`` field, when given, must be the name ``/v1/models`` lists or the alias ``pam``.
Errors are OpenAI-shaped JSON, ``{"error": {"message", "type", "param", "code"}}``, on every route: 400 for a
bad request (``param`` names the field), 401 for a missing or wrong API key, 404 for an unknown model
(``model_not_found``) or route, 405 for a wrong method, 413 for a body over ``max_body_mb``, 415 for a
body that is not ``application/json``, 503 when the queue is full, 500 for an internal error; the server
keeps serving after any of them. No message shows a Python object's repr.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import QueueFull, RequestBatcher
from .engine import Engine
from .protocol import ParsedRequest, RequestError, encode_rle, parse_chat_request, without_reprs

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error", code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": without_reprs(message), "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


MODEL_ALIAS = "pam"  # accepted as the model name besides the served model's own
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, with any parameters (``; charset=utf-8``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def run_batch(engine: Engine, requests: list[ParsedRequest]) -> list[list]:
    """All regions of ``requests`` through one ``engine.describe`` call; answers split per request,
    each as ``(RegionResult, prompt tokens)``."""
    answers = engine.describe([q for r in requests for q in r.requests], requests[0].generation_settings)
    out, start = [], 0
    for r in requests:
        out.append([(a, r.prompt_tokens) for a in answers[start : start + len(r.requests)]])
        start += len(r.requests)
    return out


def completion_body(engine: Engine, pairs: list) -> dict:
    answers = [a for a, _ in pairs]
    prompt = sum(n for _, n in pairs)
    completion = sum(len(a.token_ids) for a in answers)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": engine.model_name,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": a.text},
                "finish_reason": a.finish_reason,
                "logprobs": None,
            }
            for i, a in enumerate(answers)
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "regions": [{"index": i, "mask": encode_rle(a.mask), "score": a.score} for i, a in enumerate(answers)],
    }


def create_app(
    engine: Engine,
    *,
    api_key: str | None = None,
    max_batch_size: int = 8,
    max_wait_ms: float = 10.0,
    max_queue: int = 256,
    max_body_mb: float = 32.0,
) -> FastAPI:
    batcher = RequestBatcher(
        lambda reqs: run_batch(engine, reqs),
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="PAM region server", lifespan=lifespan)
    app.state.engine = engine
    app.state.batcher = batcher

    def authorised(request: Request) -> bool:
        if not api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())

    def unauthorised() -> JSONResponse:
        return error_response(
            401,
            "missing or wrong API key (send Authorization: Bearer <key>)",
            kind="authentication_error",
            code="invalid_api_key",
        )

    @app.get("/health")
    async def health():
        s = batcher.stats
        return {
            "status": "ok",
            "model": engine.model_name,
            "random_weights": engine.random_weights,
            "batches": s.batches,
            "requests": s.requests,
            "regions": s.regions,
            "largest_batch": s.largest_batch,
        }

    @app.get("/v1/models")
    async def models(request: Request):
        if not authorised(request):
            return unauthorised()
        return {
            "object": "list",
            "data": [{"id": engine.model_name, "object": "model", "created": 0, "owned_by": "pam"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        if not authorised(request):
            return unauthorised()
        limit = int(max_body_mb * 2**20)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return error_response(413, f"the request body is larger than {max_body_mb:g} MB", code="body_too_large")
        content_type = request.headers.get("content-type", "")
        if not is_json_media_type(content_type):
            return error_response(
                415,
                f"the request body must be JSON sent with Content-Type: application/json, "
                f"got {content_type or 'no Content-Type'!r}",
                code="unsupported_media_type",
            )
        raw = await request.body()
        if len(raw) > limit:
            return error_response(413, f"the request body is larger than {max_body_mb:g} MB", code="body_too_large")
        try:
            body = json.loads(raw)
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError
            return error_response(400, "the request body is not valid JSON")
        model = body.get("model") if isinstance(body, dict) else None
        if model is not None and not isinstance(model, str):
            return error_response(400, f"model must be a string, got {type(model).__name__}", param="model")
        if model is not None and model not in (engine.model_name, MODEL_ALIAS):
            return error_response(
                404,
                f"The model `{model}` does not exist; this server serves `{engine.model_name}` (alias `{MODEL_ALIAS}`)",
                code="model_not_found",
            )
        try:
            parsed = await asyncio.to_thread(
                parse_chat_request,
                body,
                max_new_tokens_limit=engine.max_new_tokens,
                placeholder=engine.image_placeholder,
            )
            n = engine.prompt_length(parsed.user_prompt)
            if n > engine.max_length:
                raise RequestError(
                    "messages", f"the prompt takes {n} tokens, more than the model's max_length {engine.max_length}"
                )
            parsed.prompt_tokens = n
        except RequestError as err:
            return error_response(400, err.message, param=err.param)
        except ValueError as err:  # tokenizer-level problems with the instruction text
            return error_response(400, str(err), param="messages")
        try:
            answers = await batcher.submit(parsed)
        except QueueFull as err:
            return error_response(503, f"server busy: {err}", kind="server_error", code="queue_full")
        except Exception as err:
            log.exception("chat completion failed")
            return error_response(500, f"internal error: {type(err).__name__}: {err}", kind="server_error")
        return completion_body(engine, answers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path}): no such route"
        elif err.status_code == 405:
            allowed = next((v for k, v in (err.headers or {}).items() if k.lower() == "allow"), "")
            message = f"method {request.method} is not allowed on {request.url.path}" + (
                f" (allowed: {allowed})" if allowed else ""
            )
        else:
            message = str(err.detail)
        response = error_response(err.status_code, message, code=HTTP_CODES.get(err.status_code))
        if err.headers:
            response.headers.update(err.headers)
        return response

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, err: Exception):
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(err).__name__}", kind="server_error")

    return app
