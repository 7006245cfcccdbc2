"""Bad config: random mutations of valid configs (unknown keys, wrong types, out-of-range values) in
the model, trainer, stage and data groups fail when the Trainer starts, with the field named, and
before the model is built (``build_pam`` is replaced by a tripwire)."""

from __future__ import annotations

import copy
import random
import re

import pytest
from omegaconf import OmegaConf

import pam.train.trainer as trainer_module

from .test_train import TINY, compose_train, data_root  # noqa: F401 (fixture)

SEED, RANDOM_MUTATIONS = 13, 48
# free-form mappings (a Hugging Face config, pattern tables, Hydra entries) and paths: not typed leaves
FREE = (
    "model.llm.config",
    "stage.lr_groups",
    "stage.optimizer",
    "trainer.output_dir",
    "trainer.feature_cache",
    "model.sam2.checkpoint",
    "model.llm.name_or_path",
    "model.llm.tokenizer",
    "trainer.deepspeed_config",
    "trainer.logging.wandb.name",
    "stage.init_from",
    "model.image_token",
    "stage.name",
    "trainer.checkpoint.best_metric",
    "trainer.logging.wandb.project",
    "trainer.logging.wandb.tags",
    "stage.no_decay",
    "stage.frozen",
)
# validated ranges and choices: (dotted field, bad value, what the message names)
OUT_OF_RANGE = [
    ("trainer.checkpoint.keep_last", 0, "trainer.checkpoint.keep_last"),
    ("trainer.global_batch_size", 0, "trainer.global_batch_size"),
    ("trainer.global_batch_size", 5, "trainer.global_batch_size"),
    ("trainer.engine", "tpu", "trainer.engine"),
    ("trainer.precision", "fp8", "trainer.precision"),
    ("trainer.checkpoint.best_mode", "avg", "trainer.checkpoint.best_mode"),
    ("trainer.max_nonfinite_in_a_row", -1, "trainer.max_nonfinite_in_a_row"),
    ("trainer.checkpoint.min_free_disk_gb", -1.0, "trainer.checkpoint.min_free_disk_gb"),
    ("trainer.logging.wandb.mode", "cloud", "trainer.logging.wandb.mode"),
    ("stage.lr", 0.0, "stage.lr"),
    ("stage.warmup_ratio", 1.5, "stage.warmup_ratio"),
    ("stage.max_steps", 0, "stage.max_steps"),
    ("stage.schedule", "cosin", "stage.schedule"),
    ("stage.trainable", [], "stage.trainable"),
    ("next_stage.lr", -1e-4, "next_stage.lr"),
    ("model.sam2.image_size", 100, "sam2.image_size"),
    ("model.sam2.variant", "sam3", "sam2.variant"),
    ("model.perceiver.depth", 0, "perceiver.depth"),
    ("model.perceiver.num_heads", 7, "perceiver.num_heads"),
    ("model.perceiver.num_mask_tokens", 3, "perceiver.num_mask_tokens"),
    ("model.llm.dtype", "float8", "llm.dtype"),
    ("data.dataset.track_frames", -1, "track_frames"),
    ("data.dataset.task_mode", "sometimes", "task_mode"),
    ("data.dataset.tasks", ["caption"], "tasks"),
    ("data.dataset.languages", ["fr"], "languages"),
    ("data.dataset.format", "csv", "format"),
    ("data.dataset.on_error", "ignore", "on_error"),
    ("data.max_bad_fraction", 2.0, "max_bad_fraction"),
    ("stage.optimizer.beta", [0.9, 0.99], "stage.optimizer.beta"),
    ("stage.optimizer._target_", "torch.optim.AdamWW", "stage.optimizer._target_"),
    ("data.prompt.box_jitter", 1.5, "box_jitter"),
    ("data.prompt.point_weight", "half", "prompt.point_weight"),
]


class ModelBuilt(Exception):
    pass


@pytest.fixture
def tripwire(monkeypatch):
    def no_model(*a, **k):
        raise ModelBuilt("the model was built before the config error surfaced")

    monkeypatch.setattr(trainer_module, "build_pam", no_model)


@pytest.fixture(scope="module")
def valid(tmp_path_factory, data_root) -> dict:  # noqa: F811
    out = tmp_path_factory.mktemp("cfg_run")
    cfg = compose_train([*TINY, f"trainer.output_dir={out}", f"data.root={data_root}", "trainer.feature_cache=null"])
    return OmegaConf.to_container(cfg, resolve=False)  # interpolations kept: data.dataset reaches every split


def _leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if (
            path.replace("next_stage.", "stage.", 1) in FREE
            or key.startswith("_")
            or (isinstance(value, str) and "${" in value)
        ):
            continue
        if isinstance(value, dict):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _typed_leaves(cfg: dict) -> list[tuple[str, object]]:
    out = []
    for group in ("model", "trainer", "stage", "next_stage"):
        out += list(_leaves(cfg[group], group + "."))
    # the data values every split's datasets are built from (the shared block and what it interpolates)
    data = {
        k: v
        for k, v in cfg["data"].items()
        if k not in ("train", "val", "test", "sampler", "skips", "generate", "root")
    }
    out += list(_leaves(data, "data."))
    return out


def _set(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *head, last = dotted.split(".")
    for k in head:
        node = node[k]
    node[last] = value


def _wrong_type(value, rng):
    if isinstance(value, bool):
        return rng.choice(["yes", 3])
    if isinstance(value, int):
        return rng.choice(["many", 2.5, [value]])
    if isinstance(value, float):
        return rng.choice(["fast", [value], {"v": value}])
    if isinstance(value, str):
        return rng.choice([7, ["x"], {"a": 1}])
    if isinstance(value, list):
        return rng.choice([5, "a-string"])
    return "unexpected"


def random_mutations(cfg: dict, n: int, seed: int) -> list[tuple[str, str, object, str]]:
    """(kind, dotted field, value, name the error must contain)."""
    rng = random.Random(seed)
    leaves = [(p, v) for p, v in _typed_leaves(cfg) if v is not None]
    out = []
    for _ in range(n):
        path, value = rng.choice(leaves)
        free_form = path.startswith("data.") and not path.startswith(
            ("data.dataset.", "data.prompt.")
        )  # data's own top level is free-form
        if rng.random() < 0.4 and not free_form:  # an unknown key beside a real one
            parent, _, leaf = path.rpartition(".")
            typo = leaf[:-1] + "x" + "_typo"
            out.append(("unknown_key", f"{parent}.{typo}", 1, typo))
        else:
            out.append(("wrong_type", path, _wrong_type(value, rng), path.split(".")[-1]))
    return out


def _expect_named_error(cfg: dict, dotted: str, value, name: str) -> None:
    bad = copy.deepcopy(cfg)
    _set(bad, dotted, value)
    with pytest.raises(ValueError) as info:  # ConfigError, SchemaError and friends are ValueErrors
        trainer_module.Trainer(OmegaConf.create(bad))
    assert re.search(rf"`[\w.]*{re.escape(name)}`|\b{re.escape(name)}\b", str(info.value)), (
        f"{dotted}={value!r}: {info.value}"
    )


def test_random_mutations_fail_at_start_up_naming_the_field(valid, tripwire):
    mutations = random_mutations(valid, RANDOM_MUTATIONS, SEED)
    kinds = {k: sum(m[0] == k for m in mutations) for k in ("unknown_key", "wrong_type")}
    groups = {
        g: sum(m[1].startswith(g + ".") for m in mutations) for g in ("model", "trainer", "stage", "next_stage", "data")
    }
    assert all(kinds.values()) and sum(groups[g] > 0 for g in groups) >= 4, (kinds, groups)
    failures = []
    for kind, dotted, value, name in mutations:
        try:
            _expect_named_error(valid, dotted, value, name)
        except BaseException as e:  # noqa: BLE001 — collect every miss, then report them together
            failures.append(f"{kind} {dotted}={value!r}: {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(mutations)} mutations not caught at start-up:\n" + "\n".join(
        failures
    )
    print(
        f"config mutations: {len(mutations)} random ({kinds}, by group {groups}), all caught before the model was built"
    )


@pytest.mark.parametrize("dotted,value,name", OUT_OF_RANGE, ids=[f"{d}={v}" for d, v, _ in OUT_OF_RANGE])
def test_out_of_range_values_fail_at_start_up_naming_the_field(valid, tripwire, dotted, value, name):
    _expect_named_error(valid, dotted, value, name)


def test_the_unmutated_config_reaches_the_model(valid, tripwire):
    with pytest.raises(ModelBuilt):
        trainer_module.Trainer(OmegaConf.create(copy.deepcopy(valid)))
