"""collect_sweep on a hand-made Hydra multirun folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pam.train.sweep import collect_sweep, write_sweep_tables

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
trainer:
  lr: {lr}
  steps: 100
  output_dir: ${{hydra:runtime.output_dir}}
model:
  width: {width}
  name: tiny_${{model.width}}
data:
  names: {names}
  root: ???
seed: 0
"""


def _job(sweep: Path, name: str, lr: float, width: int, names: list[str], metrics: dict | None) -> None:
    hydra_dir = sweep / name / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(CONFIG.format(lr=lr, width=width, names=json.dumps(names)))
    (hydra_dir / "overrides.yaml").write_text(f"- experiment=debug\n- trainer.lr={lr}\n- model.width={width}\n")
    if metrics is not None:
        (sweep / name / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def sweep(tmp_path) -> Path:
    sweep = tmp_path / "multirun"
    _job(sweep, "0", 1e-4, 32, ["lvis"], {"val": {"loss": 2.5}, "accuracy": 0.5})
    _job(sweep, "1", 2e-4, 32, ["lvis"], None)
    _job(sweep, "2", 1e-4, 64, ["lvis"], {"val": {"loss": 1.25}, "accuracy": 0.75})
    _job(sweep, "10", 2e-4, 64, ["lvis", "paco"], {"val": {"loss": 1.0}, "accuracy": 0.8, "seed": 7})
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / ".submitit").mkdir()  # not a job
    return sweep


def test_collect_sweep_keeps_differing_values_and_metrics(sweep):
    table = collect_sweep(sweep)
    # model.name resolves per run (tiny_32 / tiny_64); ${hydra:...}, ??? and equal values drop out.
    assert table.config_keys == ["trainer.lr", "model.width", "model.name", "data.names"]
    # "seed" is also a config key (equal in every run), so the metric is prefixed.
    assert table.metric_keys == ["val.loss", "accuracy", "metrics.seed"]
    assert table.columns == ["run", "status", "overrides", *table.config_keys, *table.metric_keys]
    assert [r["run"] for r in table.rows] == ["0", "1", "2", "10"]
    assert table.rows[1] == {
        "run": "1",
        "status": "incomplete",
        "overrides": "trainer.lr=0.0002 model.width=32",
        "trainer.lr": 2e-4,
        "model.width": 32,
        "model.name": "tiny_32",
        "data.names": ["lvis"],
        "val.loss": None,
        "accuracy": None,
        "metrics.seed": None,
    }
    assert table.rows[3]["status"] == "complete"
    assert table.rows[3]["data.names"] == ["lvis", "paco"]
    assert (table.rows[3]["val.loss"], table.rows[3]["accuracy"], table.rows[3]["metrics.seed"]) == (1.0, 0.8, 7)


def test_write_sweep_tables(sweep, tmp_path):
    md_path, csv_path = write_sweep_tables(collect_sweep(sweep), tmp_path / "tables")
    md = md_path.read_text().splitlines()
    assert md[0] == (
        "| run | status | overrides | trainer.lr | model.width | model.name | data.names | val.loss"
        " | accuracy | metrics.seed |"
    )
    assert md[2] == (
        '| 0 | complete | trainer.lr=0.0001 model.width=32 | 0.0001 | 32 | tiny_32 | ["lvis"] | 2.5 | 0.5 |  |'
    )
    assert len(md) == 6
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["status"] == "incomplete" and rows[1]["val.loss"] == ""
    assert rows[2]["trainer.lr"] == "0.0001" and rows[2]["val.loss"] == "1.25"
    assert rows[3]["data.names"] == '["lvis", "paco"]'


def test_collect_sweep_errors(tmp_path, sweep):
    with pytest.raises(FileNotFoundError, match="no such sweep folder"):
        collect_sweep(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no runs found"):
        collect_sweep(tmp_path / "empty")
    (sweep / "2" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"2/metrics.json: invalid JSON"):
        collect_sweep(sweep)


def test_collect_sweep_script(sweep):
    result = subprocess.run(
        [sys.executable, "-m", "pam.cli", "collect-sweep", str(sweep)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| 1 | incomplete |" in result.stdout
    assert (sweep / "sweep.md").read_text() in result.stdout
    assert (sweep / "sweep.csv").is_file()
