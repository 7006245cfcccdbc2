"""Inference benchmark: N regions of one image through PAM's shared-encode path vs. the upstream way.

Shared path (PAM): the N regions are collated into one batch (same ``image_key``), so one
``model(**batch)`` call runs ONE SAM 2 encode, the SAM 2 decoder for all N prompts, the perceiver
and projectors, and one LLM prefill over the N sequences. Upstream way: one call per region, each
with its own full SAM 2 encode. Both are timed under ``torch.no_grad`` without labels (logits, no
loss): median of --repeats, the two ways interleaved, after --warmup untimed runs.

Real presets use the real sizes with RANDOM weights and nothing downloaded: SAM 2.1 Hiera-L at
1024 px (no checkpoint) and a Qwen2.5-1.5B / 3B LLM built from a config dict, with the built-in
debug tokenizer. ``--dtype`` sets the LLM's weight dtype (SAM 2 and the perceiver stay float32,
as when loading the released weights).

Usage:
    python scripts/bench_inference.py --preset debug --num-regions 8
    python scripts/bench_inference.py --preset pam_1.5b --num-regions 2 --repeats 1 --out b.json
    python scripts/bench_inference.py --preset pam_3b --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pam.api import build_pam
from pam.modeling.config import PAMConfig
from pam.processing.collator import PAMCollator
from pam.processing.prompts import task_prompt

ROOT = Path(__file__).resolve().parents[1]
QWEN25 = {  # Qwen2.5-*-Instruct config.json values that set the compute
    "pam_1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, intermediate_size=8960),
    "pam_3b": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, intermediate_size=11008),
}


def build_config(preset: str, dtype: str) -> PAMConfig:
    data = yaml.safe_load((ROOT / "configs" / "model" / f"{preset}.yaml").read_text())
    if preset in QWEN25:
        data["sam2"]["checkpoint"] = None
        data["llm"].update(name_or_path=None, tokenizer=None, gradient_checkpointing=False)
        data["llm"]["config"] = dict(
            model_type="qwen2", vocab_size=151936, num_key_value_heads=2, max_position_embeddings=32768,
            rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, **QWEN25[preset],
        )
    data["llm"]["dtype"] = dtype
    return PAMConfig.from_dict(data)


def make_samples(n: int, h: int = 480, w: int = 640) -> list[dict]:
    """N regions of one synthetic image (same image_key): alternating boxes and single clicks."""
    rng = np.random.RandomState(0)
    image = (rng.rand(h, w, 3) * 255).astype(np.uint8)
    samples = []
    for i in range(n):
        x0, y0 = rng.uniform(0, 0.6 * w), rng.uniform(0, 0.6 * h)
        x1, y1 = x0 + rng.uniform(0.1, 0.4) * w, y0 + rng.uniform(0.1, 0.4) * h
        prompt = {"points": None, "point_labels": None, "box": None, "mask": None}
        if i % 2 == 0:
            prompt["box"] = np.array([x0, y0, x1, y1])
        else:
            prompt.update(points=np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]), point_labels=np.array([1]))
        turns = [{"role": "user", "content": task_prompt("short_caption")}, {"role": "assistant", "content": "a region"}]
        samples.append({"id": f"region{i}", "media_type": "image", "image_key": "img0", "pixels": image, "prompt": prompt, "turns": turns})
    return samples


def clock(fn, device: str) -> float:
    """Wall time of ``fn()``, waiting for the GPU on both ends."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=["debug", "pam_1.5b", "pam_3b"], default="debug")
    ap.add_argument("--num-regions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--out", default="bench_inference.json")
    args = ap.parse_args()
    n = args.num_regions

    torch.manual_seed(0)
    config = build_config(args.preset, args.dtype)
    bundle = build_pam(config)
    model = bundle.model.to(args.device).eval()
    collate = PAMCollator(bundle.processor)
    samples = make_samples(n)

    shared_batch = collate(samples)
    single_batches = [collate([s]) for s in samples]
    for batch in [shared_batch, *single_batches]:
        batch.model_inputs.pop("labels")  # prefill logits only: no loss over a 150k-word vocabulary

    encodes = []  # one entry per SAM 2 encode, to show what each way does
    encode_images = model.sam2.encode_images
    model.sam2.encode_images = lambda pixel_values: encodes.append(1) or encode_images(pixel_values)

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    shared_t, upstream_t = [], []
    with torch.no_grad():
        for _ in range(args.warmup):  # untimed: the shared batch and a batch of one
            model(**shared_batch)
            model(**single_batches[0])
        for _ in range(args.repeats):  # interleaved, so both ways see the same machine load
            encodes.clear()
            shared_t.append(clock(lambda: model(**shared_batch), args.device))
            shared_encodes = len(encodes)
            encodes.clear()
            upstream_t.append(clock(lambda: [model(**b) for b in single_batches], args.device))
            upstream_encodes = len(encodes)
    shared_s, upstream_s = statistics.median(shared_t), statistics.median(upstream_t)

    if args.device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    lengths = shared_batch["attention_mask"].sum(dim=1).tolist()
    result = {
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "num_regions": n,
        "image_size": config.sam2.image_size,
        "torch_threads": torch.get_num_threads(),
        "per_region_latency_s": shared_s / n,
        "shared_encode_s": shared_s,
        "upstream_way_s": upstream_s,
        "speedup_ratio": upstream_s / shared_s,
        "sam2_encodes": {"shared": shared_encodes, "upstream": upstream_encodes},
        "peak_memory_mb": round(peak_mb, 1),
        "llm_tokens_per_region": lengths[0] if len(set(lengths)) == 1 else lengths,
        "visual_tokens_per_region": config.image_region_tokens(),
        "shared_times_s": [round(t, 4) for t in shared_t],
        "upstream_times_s": [round(t, 4) for t in upstream_t],
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
