"""The training loop end to end on the debug PAM: configs, start-up errors, stages, resume, bad data.

Each run is tiny (16 synthetic train regions, 4 regions per optimiser step, a few steps), built with
Hydra's compose API and driven through ``pam.train.trainer.Trainer`` in this process.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from pam.modeling.config import ConfigError, PAMConfig
from pam.train.config import build_stage, build_trainer_config
from pam.train.hooks import HookBase
from pam.train.run import prepare_data
from pam.train.state import latest_checkpoint
from pam.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

TINY = [
    "experiment=quickstart",
    "model.sam2.checkpoint=null",  # a random debug SAM 2: no teaching step
    "~sam2_teach",
    "data=quickstart",  # images only: the counts below make whole epochs
    "data.generate.num_train_videos=0",
    "data.generate.num_test_videos=0",
    "data.generate.num_train=16",
    "data.generate.num_val=4",
    "data.generate.num_test=4",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=2",
    "stage.max_steps=3",
    "next_stage.max_steps=2",
    "trainer.logging.wandb.mode=disabled",
    "trainer.logging.progress_bar=false",
    "trainer.evaluation.enabled=false",
    "trainer.logging.every=1",
]
ONE_STAGE = "~next_stage"  # drops the quick-start experiment's second stage


def compose_train(overrides: list[str], *, hydra_node: bool = False):
    """``hydra_node``: keep the ``hydra`` node and register it, so ``${hydra:...}`` values resolve."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=hydra_node)
    if hydra_node:
        if OmegaConf.is_missing(cfg.hydra.job, "num"):  # set per job of a multirun
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


def resolve(cfg, key: str):
    return OmegaConf.to_container(cfg[key], resolve=True)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These runs are tiny: one intra-op thread is as fast on an idle machine and avoids the many-fold
    slow-down of OpenMP threads spinning against other processes on a busy one (2-core CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quickstart_data")
    prepare_data(compose_train(TINY + [f"trainer.output_dir={root}", f"data.root={root}"]))
    assert (root / "info.json").is_file() and (root / "train.jsonl").is_file()
    return root


def tiny_cfg(out: Path, data_root: Path, *extra: str):
    """The tiny run in ``out``; SAM 2 runs live unless ``extra`` sets trainer.feature_cache."""
    cache = [] if any(e.startswith("trainer.feature_cache=") for e in extra) else ["trainer.feature_cache=null"]
    return compose_train(TINY + [f"trainer.output_dir={out}", f"data.root={data_root}", *cache, *extra])


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses_by_step(run_dir: Path) -> dict[int, float]:
    """train/loss per global step; each step must be logged once."""
    rows = [row for row in read_metrics(run_dir) if "train/loss" in row]
    steps = [row["step"] for row in rows]
    assert len(steps) == len(set(steps)), f"steps logged more than once: {steps}"
    return {row["step"]: row["train/loss"] for row in rows}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, f"no tensors under {prefix}"
    return any(not torch.equal(before[k], after[k]) for k in keys)


# ----------------------------------------------------------------------------------------- configs
def _yaml_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.fixture
def forget_hydra_config():
    """compose_train(hydra_node=True) registers a HydraConfig; later tests must not see it."""
    yield
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize(
    "group,choice",
    [(g, c) for g in ("model", "data", "stage", "trainer", "experiment") for c in _yaml_choices(g)],
)
def test_every_config_group_composes_and_validates(group, choice, forget_hydra_config):
    cfg = compose_train([f"{group}={choice}"], hydra_node=True)  # sweeps write paths with ${hydra:sweep.dir}
    if group == "model":
        missing = OmegaConf.missing_keys(cfg.model)
        if missing:  # released sizes: the local weight paths are mandatory (???); typed check with stand-ins
            assert missing == {"model.sam2.checkpoint", "model.llm.name_or_path"}
            for key in missing:
                OmegaConf.update(cfg, key, "/weights/stand-in")
        PAMConfig.from_dict(resolve(cfg, "model"))
    elif group == "data":
        if choice == "pam_release":  # mandatory file paths (???): compose only, do not resolve
            assert OmegaConf.is_missing(cfg.data, "image_root") and OmegaConf.is_missing(cfg.data.files, "lvis_label")
            assert cfg.data.train._target_ == "pam.data.mixture.build_mixture"
        else:
            data = resolve(cfg, "data")
            assert data["train"]["_target_"] and data["val"]["_target_"]
    elif group == "stage":
        stage = build_stage(resolve(cfg, "stage"))
        assert stage.name == choice
    elif group == "trainer":
        build_trainer_config(resolve(cfg, "trainer"))
    else:  # an experiment: everything the Trainer validates at start-up
        PAMConfig.from_dict(resolve(cfg, "model"))
        build_trainer_config(resolve(cfg, "trainer"))
        build_stage(resolve(cfg, "stage"))
        if cfg.get("next_stage"):
            build_stage(resolve(cfg, "next_stage"), "next_stage.")
        data = resolve(cfg, "data")
        assert data["train"]["_target_"]


def test_lora_stage_builds_typed_lora_config():
    stage = build_stage(OmegaConf.to_container(compose_train(["stage=stage2_lora"]).stage, resolve=True))
    assert stage.lora is not None and stage.lora.r == 16 and "gate_proj" in stage.lora.target_modules


# ------------------------------------------------------------------------------- start-up errors
def test_unknown_trainer_field_fails_at_start_naming_it(tmp_path, data_root):
    with pytest.raises(ConfigError, match=r"trainer\.lerning_rate"):
        Trainer(tiny_cfg(tmp_path, data_root, "+trainer.lerning_rate=1"))
    assert not (tmp_path / "config.yaml").exists()  # nothing was started


def test_batch_not_multiple_of_micro_fails_naming_field(tmp_path, data_root):
    with pytest.raises(ConfigError, match=r"trainer\.global_batch_size"):
        Trainer(tiny_cfg(tmp_path, data_root, "trainer.global_batch_size=5"))
    assert not (tmp_path / "config.yaml").exists()


def test_bad_stage_value_names_the_stage_field(tmp_path, data_root):
    with pytest.raises(ConfigError, match=r"next_stage\.schedule"):
        Trainer(tiny_cfg(tmp_path, data_root, "next_stage.schedule=cosin"))


@pytest.mark.parametrize("which", ["stage", "next_stage"])
def test_unknown_trainable_pattern_fails_at_start(tmp_path, data_root, which):
    # at start-up for either stage: a typo in stage 2 must not surface only after stage 1 trained
    with pytest.raises(ValueError, match=rf"{which}\.trainable pattern 'nonexistent\.\*' matches no parameter"):
        Trainer(tiny_cfg(tmp_path, data_root, f"{which}.trainable=[nonexistent.*]"))
    assert not (tmp_path / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------------- two stages
class SnapshotAfterStage(HookBase):
    def __init__(self, model):
        self.model = model
        self.snaps: list[dict] = []

    def after_stage(self, state) -> None:
        self.snaps.append(snapshot(self.model))


def test_stage1_then_stage2(tmp_path, data_root):
    trainer = Trainer(tiny_cfg(tmp_path, data_root))
    stages_before = [dataclasses.asdict(s) for s in trainer.stages]
    before = snapshot(trainer.model)
    probe = SnapshotAfterStage(trainer.model)
    trainer.hooks.append(probe)
    final = trainer.train()

    after1, after2 = probe.snaps
    assert not changed(before, after1, "llm."), "stage 1 must leave the LLM frozen"
    assert changed(before, after1, "perceiver.")
    assert changed(before, after1, "image_projector.")
    assert changed(after1, after2, "llm."), "stage 2 trains the LLM"
    assert changed(after1, after2, "perceiver.")

    rows = read_metrics(tmp_path)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in train_rows] == ["stage1"] * 3 + ["stage2"] * 2
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in train_rows)
    assert any("val/loss" in r for r in rows if r["stage"] == "stage1")

    ckpts = tmp_path / "checkpoints"
    for name in ("final-stage1", "final-stage2"):
        assert (ckpts / name / "model.safetensors").is_file(), name
    assert final == ckpts / "final-stage2"
    assert json.loads((ckpts / "final-stage2" / "meta.json").read_text())
    assert trainer.global_step == 5
    assert [dataclasses.asdict(s) for s in trainer.stages] == stages_before, "the validated stage configs stay as given"


def test_hooks_come_from_the_config_in_order():
    cfg = build_trainer_config({"hooks": ["metrics_logger", "checkpointing"]})
    assert cfg.hooks == ["metrics_logger", "checkpointing"]
    with pytest.raises(ConfigError, match=r"trainer\.hooks"):
        build_trainer_config({"hooks": ["validaton"]})


# ----------------------------------------------------------------------------------------- resume
class CrashBeforeStep(HookBase):
    """Interrupts the optimiser step that would make ``stage_step == at`` in stage ``stage_index``
    (its micro-batches have already run forward and backward)."""

    def __init__(self, trainer: Trainer, stage_index: int, at: int):
        self.trainer, self.stage_index, self.at = trainer, stage_index, at

    def before_stage(self, state) -> None:
        trainer = self.trainer  # a test instruments the trainer itself
        step = trainer.engine.step

        def crashing_step():
            if trainer.stage_index == self.stage_index and trainer.stage_step + 1 == self.at:
                raise KeyboardInterrupt(f"simulated interrupt before step {self.at} of stage {self.stage_index}")
            return step()

        trainer.engine.step = crashing_step


RESUME_CASES = {
    # 6 steps over 16 regions of 4 per step cross an epoch boundary after step 4; interrupted in
    # step 5 (step 4 already logged), resumed from step 3 inside the first epoch
    "one_stage": dict(
        extra=(ONE_STAGE, "stage.max_steps=6", "trainer.checkpoint.every=3"),
        crash=(0, 5),
        crashed_in=5,
        checkpoint="step-000003",
        total=6,
    ),
    # stage 1 (1 step), then LoRA stage 2 (4 steps, LoRA dropout draws from the torch RNG):
    # interrupted in global step 5, resumed from global step 3 inside stage 2
    "lora_stage2": dict(
        extra=(
            "stage@next_stage=stage2_lora",
            "stage.max_steps=1",
            "next_stage.max_steps=4",
            "trainer.checkpoint.every=2",
        ),
        crash=(1, 4),
        crashed_in=5,
        checkpoint="step-000003",
        total=5,
    ),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_equals_uninterrupted(tmp_path, data_root, case):
    spec = RESUME_CASES[case]
    extra = (*spec["extra"], "trainer.checkpoint.keep_last=1", "trainer.checkpoint.resume=auto")
    total = spec["total"]

    a = Trainer(tiny_cfg(tmp_path / "a", data_root, *extra))
    a.train()

    b = Trainer(tiny_cfg(tmp_path / "b", data_root, *extra))
    b.hooks.append(CrashBeforeStep(b, *spec["crash"]))
    with pytest.raises(KeyboardInterrupt):
        b.train()
    assert latest_checkpoint(tmp_path / "b").name == spec["checkpoint"]
    # the step before the interrupted one was logged, past the checkpoint
    assert sorted(losses_by_step(tmp_path / "b")) == list(range(1, spec["crashed_in"]))

    b2 = Trainer(tiny_cfg(tmp_path / "b", data_root, *extra))
    b2.train()
    assert b2.global_step == total

    loss_a, loss_b = losses_by_step(tmp_path / "a"), losses_by_step(tmp_path / "b")  # each step logged once
    assert sorted(loss_a) == sorted(loss_b) == list(range(1, total + 1))
    for step in loss_a:
        assert loss_b[step] == pytest.approx(loss_a[step], abs=1e-6, rel=0), f"step {step}"
    lr_a = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "a")}
    lr_b = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "b")}
    assert lr_a == pytest.approx(lr_b)

    wa, wb = a.model.state_dict(), b2.model.state_dict()
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


# ------------------------------------------------------------------------------------ bad samples
def test_corrupt_image_is_skipped_and_counted(tmp_path, data_root):
    data = tmp_path / "data"
    shutil.copytree(data_root, data)
    record = json.loads((data / "train.jsonl").read_text().splitlines()[5])
    (data / record["image"]).write_bytes(b"this is not a png" * 10)

    # 4 steps x 4 regions = one whole epoch of the 16 train regions: the corrupt one is met
    trainer = Trainer(tiny_cfg(tmp_path / "run", data, ONE_STAGE, "stage.max_steps=4"))
    final = trainer.train()

    assert trainer.skips.counts["corrupt_image"] == 1
    assert trainer.skips.num_skipped == 1
    assert trainer.global_step == 4 and (final / "model.safetensors").is_file()
    rows = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert rows[-1]["data/skipped"] == 1
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in rows)


# ---------------------------------------------------------------------------------- feature cache
def test_feature_cache_trains_like_live_sam2(tmp_path, data_root):
    extra = (ONE_STAGE, "stage.max_steps=2")
    live = Trainer(tiny_cfg(tmp_path / "live", data_root, *extra))
    live.train()
    cached = Trainer(tiny_cfg(tmp_path / "cached", data_root, *extra, f"trainer.feature_cache={tmp_path / 'cache'}"))
    cached.train()
    assert cached.cache is not None and len(cached.cache) == 16 + 4  # every train and val image, once
    assert cached.cache.hits > 0 and cached.cache.misses == 0
    loss_live, loss_cached = losses_by_step(tmp_path / "live"), losses_by_step(tmp_path / "cached")
    assert sorted(loss_live) == sorted(loss_cached) == [1, 2]
    for step in loss_live:
        assert loss_cached[step] == pytest.approx(loss_live[step], rel=1e-5), f"step {step}"
