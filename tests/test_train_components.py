"""The trainer is assembled from components that own their config section: renamed flat keys fail
at start-up naming the new key, hooks see a read-only view of the run (never the trainer), and the
checkpoint manager is the only resume path."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from pam.train.config import (
    RENAMED,
    CheckpointConfig,
    EvaluationConfig,
    LoaderConfig,
    LoggingConfig,
    TrainerConfig,
    ValidationConfig,
    build_trainer_config,
)
from pam.train.hooks import HOOKS, Checkpointing, FinalEvaluation, MetricsLogger, TrainView, build_hooks
from pam.utils.config import ConfigError, compose_config

TRAIN = Path(__file__).resolve().parents[1] / "pam" / "train"
SECTIONS = {
    "loader": LoaderConfig,
    "checkpoint": CheckpointConfig,
    "validation": ValidationConfig,
    "logging": LoggingConfig,
    "evaluation": EvaluationConfig,
}


# ------------------------------------------------------------------------------ config sections
def test_each_section_is_a_typed_field_of_the_registered_schema():
    from hydra.core.config_store import ConfigStore

    fields = {f.name: f for f in dataclasses.fields(TrainerConfig)}
    schema = ConfigStore.instance().load("trainer/schema.yaml").node
    for name, cls in SECTIONS.items():
        assert fields[name].default_factory is cls
        assert dict(schema[name]) == dataclasses.asdict(cls()), name
    # every old flat key names a field that exists where it moved
    for old, new in RENAMED.items():
        section, key = new.split(".")
        assert old not in fields and key in {f.name for f in dataclasses.fields(SECTIONS[section])}, old


@pytest.mark.parametrize(("old", "value"), [("save_every", 3), ("val_max_batches", 1), ("wandb", {"mode": "disabled"})])
def test_an_old_flat_key_fails_naming_the_new_one(old, value):
    new = f"trainer.{RENAMED[old]}"
    with pytest.raises(ConfigError, match=rf"^config field `trainer\.{old}` was renamed: use `{new}`$"):
        build_trainer_config({old: value})


def test_an_old_key_on_the_command_line_fails_in_one_line(capsys):
    from pam.cli import main

    with pytest.raises(ConfigError, match=r"`trainer\.save_every` was renamed: use `trainer\.checkpoint\.every`"):
        compose_config("train", ["trainer.save_every=3"])
    with pytest.raises(ConfigError, match=r"use `trainer\.logging\.wandb\.mode`"):
        compose_config("train", ["trainer.wandb.mode=disabled"])
    assert main(["train", "trainer.keep_last=1"]) == 2  # before Hydra (and anything heavy) runs
    err = capsys.readouterr().err.strip()
    assert err == "pam train: error: config field `trainer.keep_last` was renamed: use `trainer.checkpoint.keep_last`"


def test_sections_validate_naming_their_dotted_field():
    with pytest.raises(ConfigError, match=r"`trainer\.checkpoint\.keep_last`"):
        build_trainer_config({"checkpoint": {"keep_last": 0}})
    with pytest.raises(ConfigError, match=r"`trainer\.validation\.max_batches`"):
        build_trainer_config({"validation": {"max_batches": -1}})
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) `trainer\.logging\.evry`"):
        build_trainer_config({"logging": {"evry": 2}})
    cfg = build_trainer_config({"checkpoint": {"every": 2}, "evaluation": {"enabled": False}})
    assert cfg.checkpoint.every == 2 and cfg.checkpoint.keep_last == 2 and cfg.evaluation == EvaluationConfig(False)


# ------------------------------------------------------------------------------------- hooks
def _hooks_module() -> ast.Module:
    return ast.parse((TRAIN / "hooks.py").read_text(encoding="utf-8"))


def test_hooks_never_see_the_trainer():
    """No name ``trainer`` in pam/train/hooks.py (parameter, variable or attribute base), and no
    import of the trainer module: a hook reads only the TrainView it is handed."""
    tree = _hooks_module()
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    args = [a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args + n.kwonlyargs]
    assert "trainer" not in names and "trainer" not in args
    imports = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imports if m and m.split(".")[-1] in ("trainer", "run")]


def test_the_view_is_read_only():
    view = TrainView(step=1, stage="s", stage_index=0, stage_step=1, max_steps=2, run_dir=Path("."), is_main=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.step = 2
    with pytest.raises(RuntimeError, match="not available"):
        view.save({})


def _view(tmp_path, step, *, max_steps=4, **kw):
    return TrainView(
        step=step,
        stage="stage1",
        stage_index=0,
        stage_step=step,
        max_steps=max_steps,
        run_dir=tmp_path,
        is_main=True,
        **kw,
    )


def test_hooks_act_through_the_view(tmp_path):
    cfg = build_trainer_config(
        {
            "checkpoint": {"every": 3},
            "logging": {"every": 2, "progress_bar": False, "wandb": {"mode": "disabled"}},
            "evaluation": {"max_samples": 7},
        }
    )
    hooks = build_hooks(cfg)
    assert [type(h).__name__ for h in hooks] == [type(HOOKS[n](cfg, {})).__name__ for n in cfg.hooks]
    saved, evaluated = [], []
    ckpt = next(h for h in hooks if isinstance(h, Checkpointing))
    logger = next(h for h in hooks if isinstance(h, MetricsLogger))
    final = next(h for h in hooks if isinstance(h, FinalEvaluation))
    logger.before_stage(_view(tmp_path, 0))
    for step in range(1, 5):
        view = _view(tmp_path, step, save=lambda m, s=step: saved.append(s))
        metrics = {"train/loss": 1.0 / step, "lr": 0.1}
        ckpt.after_step(view, metrics)
        logger.after_step(view, metrics)
    assert saved == [3, 4]  # every 3 steps and the stage's last
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # every 2 steps (4 is also the last)

    def evaluate(max_samples):
        evaluated.append(max_samples)
        return {"mask_iou": 0.5}

    final.after_train(_view(tmp_path, 4, evaluate=evaluate))
    assert evaluated == [7] and json.loads((tmp_path / "metrics.json").read_text()) == {"mask_iou": 0.5}
    # disabled, or no test split (evaluate returns None): the last logged train/val metrics
    FinalEvaluation(EvaluationConfig(enabled=False)).after_train(_view(tmp_path, 4, evaluate=evaluate))
    assert evaluated == [7] and json.loads((tmp_path / "metrics.json").read_text()) == {"train/loss": 0.25}


# ------------------------------------------------------------------------------------ resume
def test_the_trainer_resumes_only_through_the_checkpoint_manager():
    """pam/train/trainer.py reads no checkpoint state itself: no ``load_state_dict``, ``torch.load``,
    ``read_trainer_state`` or ``load_sharded`` call; it hands the manager its parts and calls ``load``."""
    tree = ast.parse((TRAIN / "trainer.py").read_text(encoding="utf-8"))
    calls = {
        n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
    }
    assert not calls & {"load_state_dict", "read_trainer_state", "load_sharded", "load_trainer_state"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "load" and _is_torch(n.value)]
    assert {"track", "load", "load_model", "find_resume"} <= calls


def _is_torch(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "torch"
