"""A real chat-completions HTTP server on 127.0.0.1 for tests: scripted, deterministic, self-stopping.

``with ChatServer(reply) as server:`` starts it on a free port; ``server.base_url`` is what a client
points at. ``reply(request_json, index)`` returns the assistant text, or a :class:`Fault` to answer
with an error status or after a delay. Every request is recorded with its arrival time. The serving
loop is bounded (``max_requests`` and ``max_seconds``) so a broken test never leaves it running.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int = 500  # HTTP status to answer with (200 = answer normally after `delay_s`)
    delay_s: float = 0.0  # sleep before answering (longer than the client timeout = a timeout)
    text: str = ""  # the assistant text when status is 200
    headers: dict | None = None


def last_user_text(request: dict) -> str:
    """The text of the last user message (text parts joined)."""
    for message in reversed(request["messages"]):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def chat_response(text: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    def __init__(
        self, reply: Callable[[dict, int], Any], *, max_requests: int = 500, max_seconds: float = 60.0, usage=(10, 5)
    ):
        self.reply = reply
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.usage = usage
        self.requests: list[dict] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                with server._lock:
                    index = len(server.requests)
                    server.requests.append(request)
                    server.times.append(time.monotonic())
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": f"no route {self.path}"})
                result = server.reply(request, index)
                if isinstance(result, Fault):
                    if result.delay_s:
                        time.sleep(result.delay_s)
                    if result.status != 200:
                        return self._send(
                            result.status, {"error": {"message": f"scripted {result.status}"}}, result.headers
                        )
                    result = result.text
                try:
                    self._send(200, chat_response(str(result), *server.usage))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.timeout = 0.05
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline and len(self.requests) < self.max_requests:
            self.httpd.handle_request()
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)
