"""Launch scripts: they parse, pass Hydra overrides through verbatim and start the right ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SHELL_SCRIPTS = ["launch_torchrun.sh", "launch_deepspeed.sh", "slurm_train.sbatch"]

# Stands in for scripts/train.py: records its arguments and rank environment.
RECORDER = """\
import json, os, sys
keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"]
with open(os.path.join(os.environ["PAM_TEST_OUT"], "rank%s.json" % os.environ["RANK"]), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}, f)
"""
OVERRIDES = ["experiment=debug", "stage.lr=1e-4,2e-4", "+note=two words"]


@pytest.mark.parametrize("name", SHELL_SCRIPTS)
def test_shell_scripts_parse_and_are_strict(name):
    path = SCRIPTS / name
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# ")  # usage comment at the top
    assert "set -euo pipefail" in text
    assert os.access(path, os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(script: str, tmp_path: Path, **env: str) -> list[dict]:
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    out = tmp_path / "out"
    out.mkdir()
    full_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PAM_TRAIN_SCRIPT": str(recorder),
        "PAM_TEST_OUT": str(out),
        **env,
    }
    for key in ("MASTER_ADDR", "MASTER_PORT", "NNODES", "HOSTFILE", "RANK", "WORLD_SIZE"):
        if key not in env:
            full_env.pop(key, None)
    subprocess.run(
        ["bash", str(SCRIPTS / script), *OVERRIDES], env=full_env, check=True, capture_output=True, timeout=120
    )
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.mark.slow
def test_torchrun_single_node(tmp_path):
    ranks = _run("launch_torchrun.sh", tmp_path, NPROC_PER_NODE="2")
    assert [r["env"]["RANK"] for r in ranks] == ["0", "1"]
    assert all(r["env"]["WORLD_SIZE"] == "2" and r["argv"] == OVERRIDES for r in ranks)


@pytest.mark.slow
def test_torchrun_rendezvous_from_master_addr(tmp_path):
    port = _free_port()
    ranks = _run(
        "launch_torchrun.sh",
        tmp_path,
        NPROC_PER_NODE="2",
        NNODES="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RDZV_ID="pamtest",
    )
    assert [r["env"]["RANK"] for r in ranks] == ["0", "1"]
    assert all(r["env"]["TORCHELASTIC_RUN_ID"] == "pamtest" and r["argv"] == OVERRIDES for r in ranks)


def test_torchrun_multi_node_needs_master_addr(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as err:
        _run("launch_torchrun.sh", tmp_path, NNODES="2", NPROC_PER_NODE="1")
    assert b"needs MASTER_ADDR" in err.value.stderr


@pytest.mark.slow
def test_deepspeed_launcher_single_node(tmp_path):
    port = _free_port()
    ranks = _run("launch_deepspeed.sh", tmp_path, NUM_GPUS="2", MASTER_PORT=str(port), DS_ACCELERATOR="cpu")
    assert [r["env"]["RANK"] for r in ranks] == ["0", "1"]
    # --no_local_rank: the Hydra app gets only the overrides.
    assert all(r["argv"] == OVERRIDES and r["env"]["MASTER_PORT"] == str(port) for r in ranks)


def test_deepspeed_launcher_checks_hostfile(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as err:
        _run("launch_deepspeed.sh", tmp_path, HOSTFILE=str(tmp_path / "absent"), MASTER_ADDR="node-001")
    assert b"does not exist" in err.value.stderr


def test_slurm_sbatch_builds_one_torchrun_per_node(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "calls.txt"
    fakes = {
        "scontrol": 'printf "gpu-a07\\ngpu-a08\\n"',
        # srun: drop its own options, run the command (on one "node" here).
        "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"',
        "torchrun": f'printf "%s\\n" "$@" > {log}',
    }
    for name, body in fakes.items():
        (fake_bin / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (fake_bin / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-a[07-08]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_GPUS_ON_NODE": "4",
    }
    env.pop("MASTER_PORT", None)
    subprocess.run(["bash", str(SCRIPTS / "slurm_train.sbatch"), *OVERRIDES], env=env, check=True, cwd=REPO)
    assert log.read_text().splitlines() == [
        "--nnodes",
        "2",
        "--nproc-per-node",
        "4",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        "gpu-a07:29500",
        "--rdzv-id",
        "4242",
        "scripts/train.py",
        *OVERRIDES,
    ]


def test_hostfile_example_format():
    lines = [l for l in (SCRIPTS / "hostfile.example").read_text().splitlines() if l and not l.startswith("#")]
    assert lines and all(len(l.split()) == 2 and l.split()[1].startswith("slots=") for l in lines)


def test_submitit_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra pam[slurm]")
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Hydra's deprecated automatic schema matching
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose(
                config_name=None,
                overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                return_hydra_config=True,
            )
    launcher = cfg.hydra.launcher
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min == 1440
