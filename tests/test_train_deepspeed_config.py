"""resolve_deepspeed_config on the shipped configs, checked by DeepSpeed's own config parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pam.train.deepspeed_config import TRAINER_FILLED_KEYS, resolve_deepspeed_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "deepspeed"
SETTINGS = dict(micro_batch=4, grad_accum=2, world_size=8, grad_clip=1.0, bf16=True, fp16=False)


@pytest.mark.parametrize(
    ("name", "stage", "offload_optimizer", "offload_param"),
    [
        ("zero2.json", 2, None, None),
        ("zero2_offload.json", 2, "cpu", None),
        ("zero3.json", 3, None, None),
        ("zero3_offload.json", 3, "cpu", "cpu"),
    ],
)
def test_shipped_configs_resolve_and_parse(name, stage, offload_optimizer, offload_param):
    from deepspeed.runtime.config import DeepSpeedConfig

    path = CONFIG_DIR / name
    raw = json.loads(path.read_text())
    # Every file leaves exactly the trainer's keys as "auto".
    autos = {
        k
        for k in (
            "train_batch_size",
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
            "gradient_clipping",
        )
        if raw[k] == "auto"
    }
    autos |= {f"{p}.enabled" for p in ("bf16", "fp16") if raw[p]["enabled"] == "auto"}
    assert autos == set(TRAINER_FILLED_KEYS)

    resolved = resolve_deepspeed_config(path, **SETTINGS)
    assert "auto" not in json.dumps(resolved)
    assert resolved["train_batch_size"] == 64
    assert resolved["bf16"] == {"enabled": True}
    assert resolved["fp16"]["enabled"] is False

    # DeepSpeed parses it as it would in deepspeed.initialize (world size 1 without a process group).
    parsed = DeepSpeedConfig(resolve_deepspeed_config(path, **{**SETTINGS, "world_size": 1}))
    assert parsed.train_batch_size == 8
    assert parsed.train_micro_batch_size_per_gpu == 4
    assert parsed.gradient_accumulation_steps == 2
    assert parsed.gradient_clipping == 1.0
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.zero_optimization_stage == stage
    zero = parsed.zero_config
    assert (zero.offload_optimizer.device if zero.offload_optimizer else None) == offload_optimizer
    assert (zero.offload_param.device if zero.offload_param else None) == offload_param


def test_input_dict_is_not_modified_and_missing_keys_are_added():
    config = {"train_batch_size": "auto", "zero_optimization": {"stage": 2}}
    resolved = resolve_deepspeed_config(config, **{**SETTINGS, "bf16": False, "fp16": True})
    assert config == {"train_batch_size": "auto", "zero_optimization": {"stage": 2}}
    assert resolved == {
        "train_batch_size": 64,
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": False},
        "fp16": {"enabled": True},
        "zero_optimization": {"stage": 2},
    }


def test_concrete_values_that_agree_are_kept():
    config = {"train_batch_size": 64, "gradient_accumulation_steps": 2, "gradient_clipping": 1}
    assert resolve_deepspeed_config(config, **SETTINGS)["train_batch_size"] == 64


@pytest.mark.parametrize(
    ("config", "settings", "message"),
    [
        (
            {"train_batch_size": 32},
            {},
            r"train_batch_size is 32 but micro_batch x grad_accum x world_size = 4 x 2 x 8 = 64",
        ),
        ({"train_micro_batch_size_per_gpu": 2}, {}, r"train_micro_batch_size_per_gpu is 2 but the trainer uses 4"),
        ({"bf16": {"enabled": False}}, {}, r"bf16.enabled is False but the trainer uses True"),
        ({"gradient_clipping": 0.5}, {}, r"gradient_clipping is 0.5 but the trainer uses 1.0"),
        (
            {"zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"}},
            {},
            r"zero_optimization.reduce_bucket_size still 'auto'",
        ),
        ({}, {"bf16": True, "fp16": True}, r"bf16 and fp16 cannot both be enabled"),
        ({}, {"micro_batch": 0}, r"micro_batch must be a positive integer"),
        ({"bf16": True}, {}, r"'bf16' must be an object"),
    ],
)
def test_errors_name_the_key(config, settings, message):
    with pytest.raises(ValueError, match=message):
        resolve_deepspeed_config(config, **{**SETTINGS, **settings})


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"train_batch_size": "auto",\n "x": }')
    with pytest.raises(ValueError, match=r"bad.json: invalid JSON at line 2"):
        resolve_deepspeed_config(bad, **SETTINGS)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        resolve_deepspeed_config(tmp_path / "absent.json", **SETTINGS)
    leftover = tmp_path / "left.json"
    leftover.write_text('{"optimizer": {"params": {"lr": "auto"}}}')
    with pytest.raises(ValueError, match=r"left.json: optimizer.params.lr still 'auto'"):
        resolve_deepspeed_config(leftover, **SETTINGS)
