"""Hot-path changes from issue 12: vectorised left padding, batched generation, the generate benchmark's output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.modeling.pam import left_pad
from pam.processing.collator import PAMCollator

from .helpers import image_sample, region_mask

ROOT = Path(__file__).resolve().parents[1]


def _left_pad_reference(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loop: the kept positions of each row, in order, flush right in a zero row of the longest length."""
    rows = [embeds[r][mask[r]] for r in range(embeds.shape[0])]
    width = max((len(x) for x in rows), default=0)
    out = torch.zeros(embeds.shape[0], width, embeds.shape[-1], dtype=embeds.dtype)
    out_mask = torch.zeros(embeds.shape[0], width, dtype=torch.long)
    for r, kept in enumerate(rows):
        if len(kept):
            out[r, width - len(kept) :] = kept
            out_mask[r, width - len(kept) :] = 1
    return out, out_mask


@pytest.mark.parametrize("seed", range(5))
def test_left_pad_equals_per_row_loop(seed):
    g = torch.Generator().manual_seed(seed)
    rows, length, dim = 1 + seed, 9, 4
    lengths = torch.randint(1, length + 1, (rows,), generator=g)
    lengths[0] = length  # one full row, as in a real batch
    mask = torch.arange(length)[None, :] < lengths[:, None]  # right padded
    embeds = torch.randn(rows, length, dim, generator=g)
    embeds[~mask] = 7.0  # pad positions must not leak into the output
    got, got_mask = left_pad(embeds, mask)
    want, want_mask = _left_pad_reference(embeds, mask)
    assert got_mask.dtype == torch.long
    assert torch.equal(got_mask, want_mask)
    assert torch.equal(got, want)


def test_left_pad_keeps_order_of_scattered_positions():
    embeds = torch.arange(12, dtype=torch.float32).reshape(2, 6, 1)
    mask = torch.tensor([[True, False, True, True, False, False], [True, True, True, True, True, False]])
    got, got_mask = left_pad(embeds, mask)
    assert got[:, :, 0].tolist() == [[0.0, 0.0, 0.0, 2.0, 3.0], [6.0, 7.0, 8.0, 9.0, 10.0]]
    assert got_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]


def test_batched_generate_equals_single_region_calls(debug_bundle):
    samples = [
        image_sample("points", {"points": np.array([[100.0, 80.0], [150.0, 100.0]]), "point_labels": np.array([1, 0])}),
        image_sample("box", {"box": np.array([50.0, 40.0, 190.0, 130.0])}, task="short_caption"),
        image_sample("mask", {"mask": region_mask()}, task="detailed_caption"),
    ]
    samples = [{**s, "turns": s["turns"][:-1]} for s in samples]  # the user turns to answer
    batch = PAMCollator(debug_bundle.processor, for_generation=True)(samples)
    # prompts of different lengths: left padding is exercised
    assert batch["attention_mask"].sum(1).unique().numel() > 1
    predictor = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(3), vision_dtype="float32")
    together = predictor.generate_samples(samples)  # one model call (batch_size 8)
    alone = [predictor.generate_samples([s])[0] for s in samples]
    assert len(together) == 3
    for i, one in enumerate(alone):
        assert together[i].token_ids == one.token_ids, samples[i]["id"]
        assert np.array_equal(together[i].mask, one.mask) and together[i].score == pytest.approx(one.score, abs=1e-6)


def test_bench_inference_generate_writes_rows(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "scripts" / "bench_inference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "OUT.json"
    bench.main(
        [
            "--generate",
            "--preset",
            "debug",
            "--num-regions",
            "1,2",
            "--max-new-tokens",
            "2",
            "--warmup",
            "0",
            "--no-shared-seq",
            "--no-kernel-check",
            "--repeats",
            "3",
            "--out",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["num_regions"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("ours_s_per_region", "upstream_s_per_region", "speedup"):
            assert r[key] > 0, (r["num_regions"], key)
        # the speed-up is paired: the median of the three per-repeat ratios, with their min and max
        pairs = r["speedup_repeats"]
        assert len(pairs) == 3 and r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
        assert r["speedup"] == pytest.approx(sorted(pairs)[1], abs=1e-3)
        assert (r["speedup_min"], r["speedup_max"]) == pytest.approx((min(pairs), max(pairs)), abs=1e-3)
