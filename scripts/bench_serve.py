"""Server throughput: requests/s and mean latency for 1 vs N concurrent clients on one image.

Starts ``pam serve`` (the debug-size model with random weights unless --checkpoint is given) in a
subprocess on a free 127.0.0.1 port, then for each concurrency level C sends --requests chat
completions, each for one region (a different box each) of the same image, from C client threads
(each sends its share one after another). Requests that arrive within the server's batching window
share one SAM 2 encode and one batched generation. Greedy decoding; the debug model with random
weights never emits the end-of-turn token, so every answer is exactly --max-tokens tokens long.

Usage:
    python scripts/bench_serve.py --requests 32 --concurrency 1 8 --out runs/bench_serve.json
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    from pam.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


def image_url(h: int = 480, w: int = 640) -> str:
    rng = np.random.RandomState(0)
    img = (rng.rand(h, w, 3) * 60).astype(np.uint8)
    img[100:300, 120:400] = (220, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def request_body(url: str, i: int, max_tokens: int, task: str) -> dict:
    box = [100 + (i % 16) * 5, 80 + (i % 16) * 3, 380 + (i % 16) * 5, 300 + (i % 16) * 3]
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": task}]
    return {
        "model": "pam",
        "messages": [{"role": "user", "content": content}],
        "regions": [{"box": box}],
        "max_tokens": max_tokens,
    }


def run_level(base: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []

    def worker(chunk: list[dict]) -> None:
        with httpx.Client(timeout=600) as client:
            for body in chunk:
                t0 = time.perf_counter()
                r = client.post(f"{base}/v1/chat/completions", json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"server answered {r.status_code}: {r.text[:300]}")

    before = httpx.get(f"{base}/health").json()
    chunks = [bodies[k::concurrency] for k in range(concurrency)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    wall = time.perf_counter() - start
    after = httpx.get(f"{base}/health").json()
    batches = after["batches"] - before["batches"]
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(bodies) / wall, 3),
        "mean_latency_s": round(statistics.mean(latencies), 3),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "model_calls": batches,
        "mean_requests_per_model_call": round(len(bodies) / max(batches, 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--task", default="detailed_caption")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "pam.cli",
        "serve",
        "--port",
        str(port),
        "--max-new-tokens",
        str(args.max_tokens),
        "--max-batch-size",
        str(args.max_batch_size),
        "--max-wait-ms",
        str(args.max_wait_ms),
    ]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"pam serve exited: {server.stderr.read()[-2000:]}")
            try:
                health = httpx.get(f"{base}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise RuntimeError("pam serve did not start within 180 s") from None
                time.sleep(0.5)
        url = image_url()
        for i in range(args.warmup):
            httpx.post(
                f"{base}/v1/chat/completions", json=request_body(url, i, args.max_tokens, args.task), timeout=600
            ).raise_for_status()
        bodies = [request_body(url, i, args.max_tokens, args.task) for i in range(args.requests)]
        levels = [run_level(base, bodies, c) for c in args.concurrency]
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "model": health["model"],
        "random_weights": health["random_weights"],
        "image": "640x480 PNG, one box region per request",
        "max_tokens": args.max_tokens,
        "task": args.task,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "cpu_count": os.cpu_count(),
        "levels": levels,
    }
    if len(levels) > 1:
        result["speedup_requests_per_s"] = round(levels[-1]["requests_per_s"] / levels[0]["requests_per_s"], 2)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
