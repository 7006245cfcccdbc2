"""Inference benchmark: N regions of one image, PAM's shared path against the upstream way.

``--generate`` (what a user waits for): for each N in ``--num-regions`` (default 1,4,8,16), with
the same weights in one process,

* ours: ONE SAM 2 encode for the image, the N regions batched through the SAM 2 decoder, the
  perceiver, the projectors, one LLM prefill, then KV-cached batched greedy decode;
* upstream: one region at a time, each with its own SAM 2 encode and its own generation;
* shared-seq (unless ``--no-shared-seq``): one encode, then each region generated alone; it
  separates the gain of sharing the encode from the gain of batching the decode.

Every path decodes exactly ``--max-new-tokens`` tokens per region (EOS suppressed through
``min_new_tokens``). Reported per path: seconds per region, time to first token (first region,
and until every region has one), decode tokens/s, a stage breakdown (SAM 2 encode, decoder,
perceiver, projectors, prefill, decode, other) and whether the generated ids equal ours.
Peak memory: CUDA max allocated per path on a GPU; on a CPU the process's peak RSS (all paths).
Also timed: the perceiver with PyTorch's SDPA kernels against the MATH kernel (same inputs).

Without ``--generate``: the forward pass only (prefill logits, no decode), as before.

Real presets use the real sizes with RANDOM weights and nothing downloaded: SAM 2.1 Hiera-L at
1024 px (no checkpoint) and a Qwen2.5-1.5B / 3B LLM built from a config dict, with the built-in
debug tokenizer. ``--dtype`` sets the LLM's weight dtype; ``--dtype-all`` casts SAM 2 and the
perceiver too; ``--compile`` sets ``model.compile`` (GPU only).

    python scripts/bench_inference.py --generate --preset debug --out gen_debug.json
    python scripts/bench_inference.py --generate --preset pam_1.5b --num-regions 8 --max-new-tokens 8 --out gen_15b.json
    python scripts/bench_inference.py --generate --preset pam_3b --device cuda --dtype bfloat16 --dtype-all
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import LogitsProcessor, LogitsProcessorList

from pam.api import build_pam
from pam.modeling.config import PAMConfig
from pam.processing.collator import PAMCollator
from pam.processing.prompts import task_prompt
from pam.utils.config import load_group_yaml

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["debug", "fast_debug", "pam_1.5b", "pam_3b", "fast_1.5b", "fast_3b"]
QWEN25 = {  # Qwen2.5-*-Instruct config.json values that set the compute
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, intermediate_size=8960),
    "3b": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, intermediate_size=11008),
}
STAGES = ["sam2_encode", "sam2_decoder", "perceiver", "projectors", "prefill", "decode", "other"]


def build_config(preset: str, dtype: str, compile_: bool = False) -> PAMConfig:
    data = load_group_yaml(ROOT / "configs" / "model" / f"{preset}.yaml", schema=PAMConfig().to_dict())
    size = preset.split("_")[-1]
    if size in QWEN25:
        data["sam2"]["checkpoint"] = None
        data["llm"].update(name_or_path=None, tokenizer=None, gradient_checkpointing=False)
        data["llm"]["config"] = dict(
            model_type="qwen2",
            vocab_size=151936,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_theta=1000000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            **QWEN25[size],
        )
    data["llm"]["dtype"] = dtype
    data["compile"] = compile_
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
        turns = [
            {"role": "user", "content": task_prompt("short_caption")},
            {"role": "assistant", "content": "a region"},
        ]
        samples.append(
            {
                "id": f"region{i}",
                "media_type": "image",
                "image_key": "img0",
                "pixels": image,
                "prompt": prompt,
                "turns": turns,
            }
        )
    return samples


class StageClock:
    """Wall time per stage, from wrappers and forward hooks on the model's own parts.

    On a GPU every boundary synchronises, so the stages add up (and each costs a sync)."""

    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.first_logits: float | None = None  # time of the first sampled token (end of prefill)
        self.encodes = 0
        self._start: dict[str, float] = {}

    def now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def _wrap(self, owner, name: str, stage: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = self.now()
            out = original(*args, **kwargs)
            self.totals[stage] += self.now() - t0
            if stage == "sam2_encode":
                self.encodes += args[0].shape[0] if args else kwargs["pixel_values"].shape[0]
            return out

        setattr(owner, name, timed)
        return lambda: delattr(owner, name)

    def _hooks(self, module, stage: str):
        pre = module.register_forward_pre_hook(lambda *_: self._start.__setitem__(stage, self.now()))
        post = module.register_forward_hook(
            lambda *_: self.totals.__setitem__(stage, self.totals[stage] + self.now() - self._start[stage])
        )
        return lambda: (pre.remove(), post.remove())

    @contextmanager
    def attached(self):
        m = self.model
        undo = [
            self._wrap(m.sam2, "encode_images", "sam2_encode"),
            self._wrap(m.sam2, "decode", "sam2_decoder"),
            self._hooks(m.perceiver, "perceiver"),
            self._hooks(m.image_projector, "projectors"),
            self._hooks(m.semantic_projector, "projectors"),
        ]
        try:
            yield self
        finally:
            for u in undo:
                u()


class FirstTokenClock(LogitsProcessor):
    """Called once per decoding step after the LLM's forward: the first call ends the prefill."""

    def __init__(self, clock: StageClock):
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, input_ids, scores):
        self.calls.append(self.clock.now())
        return scores


class _Row:
    """Generated ids of one region (EOS suppressed by min_new_tokens, so all max_new_tokens)."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = token_ids


def timed_generate(model, batch, tokenizer, max_new_tokens: int, device: str) -> dict:
    """One ``model.generate`` call on ``batch``, with its stage breakdown."""
    clock = StageClock(model, device)
    first = FirstTokenClock(clock)
    llm_generate = model.llm.generate
    llm_t: dict[str, float] = {}

    def timed_llm_generate(*args, **kwargs):
        llm_t["start"] = clock.now()
        out = llm_generate(*args, **kwargs)
        llm_t["end"] = clock.now()
        return out

    model.llm.generate = timed_llm_generate
    kwargs = {"min_new_tokens": max_new_tokens, "logits_processor": LogitsProcessorList([first])}
    try:
        with clock.attached():
            t0 = clock.now()
            proc = getattr(tokenizer, "_pam_processor", None)
            eos = (
                proc.eos_token_ids
                if proc is not None
                else [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
            )
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
                generation_kwargs=kwargs,
            )
            results = [_Row([t for t in row if t not in eos]) for row in out.sequences.tolist()]
            total = clock.now() - t0
    finally:
        del model.llm.generate
    st = clock.totals
    st["prefill"] = first.calls[0] - llm_t["start"]
    st["decode"] = llm_t["end"] - first.calls[0]
    st["other"] = total - sum(st[k] for k in STAGES if k != "other")
    n = len(results)
    return {
        "total_s": total,
        "ttft_s": first.calls[0] - t0,
        "decode_steps": len(first.calls) - 1,
        "decode_tokens": n * (len(first.calls) - 1),
        "stages": dict(st),
        "encodes": clock.encodes,
        "token_ids": [r.token_ids for r in results],
        "new_tokens": [len(r.token_ids) for r in results],
    }


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def run_paths(model, bundle, n: int, args) -> dict:
    collate = PAMCollator(bundle.processor, for_generation=True)
    samples = make_samples(n)
    batch = collate(samples)
    singles = [collate([s]) for s in samples]
    tok, dev, k = bundle.tokenizer, args.device, args.max_new_tokens

    def upstream() -> dict:
        return merge([timed_generate(model, b, tok, k, dev) for b in singles])

    def shared_seq() -> dict:  # one encode, then each region generated alone
        clock = StageClock(model, dev)
        with clock.attached():
            t0 = clock.now()
            feats = model.sam2.encode_images(batch["pixel_values"].to(dev, model.sam2_dtype))
            encode_s = clock.now() - t0
        runs = []
        for r, b in enumerate(singles):
            inputs = {
                **b.model_inputs,
                "pixel_values": None,
                "image_features": feats.select(batch["region_image_index"][r : r + 1].to(dev)),
            }
            inputs["region_image_index"] = torch.zeros(1, dtype=torch.long)
            runs.append(timed_generate(model, inputs, tok, k, dev))
        out = merge(runs)
        out["stages"]["sam2_encode"] += encode_s
        out["total_s"] += encode_s
        out["ttft_s"] += encode_s
        out["ttft_last_s"] += encode_s
        out["encodes"] += clock.encodes
        return out

    paths = {"ours": lambda: timed_generate(model, batch, tok, k, dev), "upstream": upstream}
    if not args.no_shared_seq:
        paths["shared_seq"] = shared_seq
    res: dict[str, list[dict]] = {p: [] for p in paths}
    peaks: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so every path sees the same machine load
            for name, fn in paths.items():
                if dev == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                res[name].append(fn())
                peaks[name] = max(peaks.get(name, 0.0), peak_memory_mb(dev))
    picked = {p: sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2] for p, runs in res.items()}  # the median run
    for p in picked:
        picked[p]["all_total_s"] = [round(r["total_s"], 4) for r in res[p]]
        picked[p]["peak_memory_mb"] = round(peaks[p], 1)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    picked["prompt_tokens_per_region"] = statistics.mean(lengths)
    picked["paired_speedups"] = paired_speedups(res["upstream"], res["ours"])
    return picked


def paired_speedups(upstream: list[dict], ours: list[dict]) -> list[float]:
    """upstream / ours for each repeat: the two paths of one repeat ran back to back under the same
    machine load, so their ratio moves far less than either time does on a shared machine."""
    return [u["total_s"] / o["total_s"] for u, o in zip(upstream, ours, strict=True)]


def merge(runs: list[dict]) -> dict:
    """Regions run one after another: times add up; region r's first token waits for 0..r-1."""
    out = {
        "total_s": sum(r["total_s"] for r in runs),
        "ttft_s": runs[0]["ttft_s"],
        "ttft_last_s": sum(r["total_s"] for r in runs[:-1]) + runs[-1]["ttft_s"],
        "decode_tokens": sum(r["decode_tokens"] for r in runs),
        "stages": {s: sum(r["stages"][s] for r in runs) for s in STAGES},
        "encodes": sum(r["encodes"] for r in runs),
        "token_ids": [ids for r in runs for ids in r["token_ids"]],
        "new_tokens": [t for r in runs for t in r["new_tokens"]],
    }
    return out


def perceiver_kernels(model, bundle, n: int, device: str, repeats: int = 3) -> dict:
    """The perceiver on N regions' decoder outputs: default SDPA kernels vs the MATH kernel."""
    batch = PAMCollator(bundle.processor, for_generation=True)(make_samples(n))
    with torch.no_grad():
        feats = model.sam2.encode_images(batch["pixel_values"].to(device, model.sam2_dtype))
        dec = model.sam2.decode(feats, batch["region_image_index"].to(device), [p.to(device) for p in batch["prompts"]])
        clock = StageClock(model, device)
        out, times = {}, {}
        for name, backends in (
            ("math", [SDPBackend.MATH]),
            (
                "sdpa",
                [
                    SDPBackend.FLASH_ATTENTION,
                    SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH,
                ],
            ),
        ):
            with sdpa_kernel(backends):
                model.perceiver(dec.image_embedding, dec.mask_tokens)  # warm-up
                t = []
                for _ in range(repeats):
                    t0 = clock.now()
                    out[name] = model.perceiver(dec.image_embedding, dec.mask_tokens)
                    t.append(clock.now() - t0)
            times[name] = min(t)
    diff = max(float((a - b).abs().max()) for a, b in zip(out["math"], out["sdpa"]))
    return {
        "num_regions": n,
        "math_s": times["math"],
        "sdpa_s": times["sdpa"],
        "speedup": times["math"] / times["sdpa"],
        "max_abs_diff": diff,
    }


def summarise(n: int, picked: dict, k: int, visual_tokens: int) -> dict:
    ours, up = picked["ours"], picked["upstream"]
    pairs = picked["paired_speedups"]
    row = {
        "num_regions": n,
        "ours_s_per_region": ours["total_s"] / n,
        "upstream_s_per_region": up["total_s"] / n,
        "speedup": statistics.median(pairs),  # the median of the per-repeat (paired) ratios
        "speedup_min": min(pairs),
        "speedup_max": max(pairs),
        "speedup_repeats": [round(x, 3) for x in pairs],
        "max_new_tokens": k,
        "llm_tokens_per_region": picked["prompt_tokens_per_region"] + k,
        "visual_tokens_per_region": visual_tokens,
        "same_token_ids_as_ours": {},
    }
    for p in ("ours", "upstream", "shared_seq"):
        if p not in picked:
            continue
        r = picked[p]
        decode_s = r["stages"]["decode"]
        pp = r["stages"]["perceiver"] + r["stages"]["projectors"]
        row[p] = {
            "total_s": r["total_s"],
            "s_per_region": r["total_s"] / n,
            "ttft_first_region_s": r["ttft_s"],
            "ttft_all_regions_s": r.get("ttft_last_s", r["ttft_s"]),
            "decode_tokens_per_s": r["decode_tokens"] / decode_s if decode_s > 0 else None,
            "sam2_encodes": r["encodes"],
            "stages_s": {s: round(v, 5) for s, v in r["stages"].items()},
            "stage_share": {s: round(v / r["total_s"], 4) for s, v in r["stages"].items()},
            "perceiver_projectors_share": pp / r["total_s"],
            "peak_memory_mb": r["peak_memory_mb"],
            "repeat_totals_s": r["all_total_s"],
            "new_tokens_per_region": sorted(set(r["new_tokens"])),
        }
        row["same_token_ids_as_ours"][p] = r["token_ids"] == ours["token_ids"]
    if "shared_seq" in picked:
        row["speedup_from_shared_encode"] = up["total_s"] / picked["shared_seq"]["total_s"]
        row["speedup_from_batched_decode"] = picked["shared_seq"]["total_s"] / ours["total_s"]
    return row


def markdown(rows: list[dict], kernels: dict | None) -> str:
    lines = [
        "| N | ours s/region | upstream s/region | speed-up: median (min-max) of paired repeats | ours TTFT s"
        " | upstream TTFT (all regions) s | ours decode tok/s | upstream decode tok/s | LLM tokens/region |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, u = r["ours"], r["upstream"]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append(
            f"| {r['num_regions']} | {r['ours_s_per_region']:.3f} | {r['upstream_s_per_region']:.3f} | "
            f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f}, n={len(r['speedup_repeats'])}) | "
            f"{o['ttft_first_region_s']:.3f} | {u['ttft_all_regions_s']:.3f} | {fmt(o['decode_tokens_per_s'])} | "
            f"{fmt(u['decode_tokens_per_s'])} | {r['llm_tokens_per_region']:.0f} |"
        )
    lines += [
        "",
        "Stage breakdown, share of each path's time (" + ", ".join(STAGES) + "):",
        "",
        "| N | path | " + " | ".join(STAGES) + " | perceiver+projectors |",
        "|---|---|" + "---|" * (len(STAGES) + 1),
    ]
    for r in rows:
        for p in ("ours", "shared_seq", "upstream"):
            if p in r:
                sh = r[p]["stage_share"]
                lines.append(
                    f"| {r['num_regions']} | {p} | "
                    + " | ".join(f"{100 * sh[s]:.1f}%" for s in STAGES)
                    + f" | {100 * r[p]['perceiver_projectors_share']:.2f}% |"
                )
    if kernels:
        lines += [
            "",
            f"Perceiver, {kernels['num_regions']} regions: "
            f"MATH {kernels['math_s']:.4f} s, SDPA {kernels['sdpa_s']:.4f} s "
            f"({kernels['speedup']:.2f}x), max |diff| {kernels['max_abs_diff']:.2e}",
        ]
    return "\n".join(lines)


def run_generate(args) -> dict:
    torch.manual_seed(0)
    config = build_config(args.preset, args.dtype, args.compile)
    bundle = build_pam(config)
    model = bundle.model.to(args.device).eval()
    if args.dtype_all:
        model.sam2.to(getattr(torch, args.dtype))
        model.perceiver.to(getattr(torch, args.dtype))
    counts = [int(x) for x in str(args.num_regions).split(",")]
    with torch.no_grad():  # untimed warm-up: a batch of one through every path's code
        for _ in range(args.warmup):
            b = PAMCollator(bundle.processor, for_generation=True)(make_samples(1))
            timed_generate(model, b, bundle.tokenizer, min(args.max_new_tokens, 2), args.device)
    rows = []
    for n in counts:
        rows.append(summarise(n, run_paths(model, bundle, n, args), args.max_new_tokens, config.image_region_tokens()))
        print(
            json.dumps(
                {
                    k: rows[-1][k]
                    for k in ("num_regions", "ours_s_per_region", "upstream_s_per_region", "speedup", "speedup_min")
                    + ("speedup_max",)
                }
            ),
            flush=True,
        )
    kernels = None if args.no_kernel_check else perceiver_kernels(model, bundle, max(counts), args.device)
    return {
        "mode": "generate",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "dtype_all": args.dtype_all,
        "compile": args.compile,
        "image_size": config.sam2.image_size,
        "torch_threads": torch.get_num_threads(),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "peak_memory_note": "CUDA max allocated per path"
        if args.device == "cuda"
        else "process peak RSS (all paths and N so far)",
        "rows": rows,
        "perceiver_kernels": kernels,
        "markdown": markdown(rows, kernels),
    }


def run_forward(args) -> dict:
    """Prefill only: one ``model(**batch)`` for the N regions against one call per region."""
    n = int(args.num_regions)
    torch.manual_seed(0)
    config = build_config(args.preset, args.dtype, args.compile)
    bundle = build_pam(config)
    model = bundle.model.to(args.device).eval()
    collate = PAMCollator(bundle.processor)
    samples = make_samples(n)
    shared, singles = collate(samples), [collate([s]) for s in samples]
    for b in [shared, *singles]:
        b.model_inputs.pop("labels")  # prefill logits only: no loss over a 150k-word vocabulary
    clock = StageClock(model, args.device)
    shared_t, upstream_t = [], []
    with torch.no_grad():
        for _ in range(args.warmup):
            model(**shared)
            model(**singles[0])
        for _ in range(args.repeats):
            t0 = clock.now()
            model(**shared)
            shared_t.append(clock.now() - t0)
            t0 = clock.now()
            for b in singles:
                model(**b)
            upstream_t.append(clock.now() - t0)
    s, u = statistics.median(shared_t), statistics.median(upstream_t)
    return {
        "mode": "forward",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "num_regions": n,
        "image_size": config.sam2.image_size,
        "torch_threads": torch.get_num_threads(),
        "per_region_latency_s": s / n,
        "shared_encode_s": s,
        "upstream_way_s": u,
        "speedup_ratio": u / s,
        "peak_memory_mb": round(peak_memory_mb(args.device), 1),
        "visual_tokens_per_region": config.image_region_tokens(),
        "shared_times_s": [round(t, 4) for t in shared_t],
        "upstream_times_s": [round(t, 4) for t in upstream_t],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=PRESETS, default="debug")
    ap.add_argument("--generate", action="store_true", help="time whole answers (encode to last token)")
    ap.add_argument(
        "--num-regions", default=None, help="comma list with --generate (default 1,4,8,16); one N without (default 8)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repeats (default 5 with --generate, the speed-up being the median of the paired "
        "ratios; 3 without)",
    )
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-shared-seq", action="store_true", help="skip the shared-encode-but-sequential-decode path")
    ap.add_argument("--no-kernel-check", action="store_true", help="skip the perceiver SDPA-vs-MATH timing")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--dtype-all", action="store_true", help="cast SAM 2 and the perceiver to --dtype too")
    ap.add_argument("--compile", action="store_true", help="model.compile=True (torch.compile; GPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    ap.add_argument("--out", default="bench_inference.json")
    args = ap.parse_args(argv)
    if args.num_regions is None:
        args.num_regions = "1,4,8,16" if args.generate else "8"
    if args.repeats is None:
        args.repeats = 5 if args.generate else 3
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.max_new_tokens < 2:
        ap.error("--max-new-tokens must be >= 2 (one prefill token, at least one decode step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_generate(args) if args.generate else run_forward(args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.generate:
        print(result["markdown"])
    else:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
