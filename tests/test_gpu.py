"""GPU checks (skipped without CUDA): bf16 forward/backward/generate, and DeepSpeed ZeRO-2 in bf16."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pam.api import build_pam
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.processing.collator import PAMCollator

from .helpers import debug_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_forward_backward_generate(three_region_samples):
    torch.manual_seed(0)
    cfg = debug_config(**{"llm.dtype": "bfloat16"})
    bundle = build_pam(cfg)
    model = bundle.model.cuda()
    batch = PAMCollator(bundle.processor)(three_region_samples)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.loss_sum.device.type == "cuda" and out.num_tokens.device.type == "cuda"  # no host copy
    assert torch.isfinite(out.loss_sum) and int(out.num_tokens) > 0
    out.loss_sum.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("perceiver.layers"))
    # the bf16 mean token loss stays close to the float32 one on the same weights
    loss = float(out.loss_sum / out.num_tokens)
    ref = build_pam(debug_config()).model
    ref.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    ref.sam2.model.load_state_dict(model.sam2.model.state_dict())
    with torch.no_grad():
        ref_out = ref.cuda()(**batch)
    ref_loss = float(ref_out.loss_sum / ref_out.num_tokens)
    assert int(ref_out.num_tokens) == int(out.num_tokens)
    assert abs(loss - ref_loss) < 0.05 * ref_loss
    # generation through the predictor (bf16 autocast for the visual path on CUDA, as upstream)
    predictor = PAMPredictor(bundle, generation=GenerationSettings.greedy(4))
    assert predictor.vision_dtype == torch.bfloat16
    results = predictor.generate_samples([{**s, "turns": s["turns"][:-1]} for s in three_region_samples])
    assert len(results) == 3 and results[0].mask.shape == (200, 300) and results[0].mask.dtype == bool
    assert all(0 < len(r.token_ids) <= 4 or r.text == "" for r in results)


def test_deepspeed_zero2_bf16_on_cuda(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "experiment=quickstart",
        "stage=stage2",
        "~next_stage",
        "stage.max_steps=3",
        f"trainer.output_dir={tmp_path}/run",
        f"data.root={tmp_path}/data",
        "data.generate.num_train=8",
        "data.generate.num_val=2",
        "data.generate.num_test=2",
        "trainer.global_batch_size=4",
        "trainer.micro_batch_size=2",
        "trainer.logging.every=1",
        "trainer.evaluation.enabled=false",
        "trainer.feature_cache=null",
        "trainer.logging.progress_bar=false",
        "trainer.logging.wandb.mode=disabled",
        "trainer.engine=deepspeed",
        f"trainer.deepspeed_config={ROOT}/configs/deepspeed/zero2.json",
        "trainer.precision=bf16",
    ]
    env = dict(
        os.environ,
        WANDB_MODE="disabled",
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="29571",
    )
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 3 and all(l == l for l in losses)
