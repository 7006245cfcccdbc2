"""docs/quickstart.md's "train on your own data" recipe, run as written on a COCO-style set (three
images per split): by default the documented conversions run in this process and the documented
train command's config is composed and its three splits built (what a typo in the doc or a renamed
option breaks); the `soak` test runs the train command itself, shortened to a few steps by extra
overrides, and checks its evaluation and report."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pam.data.synthetic import SyntheticConfig, make_image_record
from pam.utils.masks import mask_to_box

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "quickstart.md"
# appended to the documented train command: a few steps, a short evaluation
SHORT = [
    "stage.max_steps=2",
    "next_stage.max_steps=2",
    "trainer.validation.every=0",
    "trainer.logging.every=1",
    "trainer.logging.progress_bar=false",
    "trainer.evaluation.max_samples=2",
    "trainer.checkpoint.min_free_disk_gb=0",
]


def recipe_commands() -> list[str]:
    """The shell commands of the fenced block under the doc's "Train on your own data" heading."""
    text = DOC.read_text()
    section = text.split("## Train on your own data", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def write_coco_set(root: Path) -> None:
    """``my/images/*.png`` and ``my/annotations/{train,val,test}.json`` (COCO instances: polygons of
    the shapes' boxes, categories by name)."""
    (root / "my" / "images").mkdir(parents=True)
    (root / "my" / "annotations").mkdir(parents=True)
    cfg = SyntheticConfig(image_size=(96, 96), other_image_sizes=())
    names = sorted(
        {
            c
            for split in ("train", "val", "test")
            for i in range(3)
            for c in [make_image_record(cfg, split, i)[0].regions[0].category["en"]]
        }
    )
    categories = [{"id": k + 1, "name": name.replace(" ", "_")} for k, name in enumerate(names)]
    for split in ("train", "val", "test"):
        images, annotations = [], []
        for i in range(3):
            record, pixels = make_image_record(cfg, split, i)
            name = f"{split}_{i}.png"
            Image.fromarray(pixels).save(root / "my" / "images" / name)
            images.append({"id": i, "file_name": name, "height": int(pixels.shape[0]), "width": int(pixels.shape[1])})
            region = record.regions[0]
            x0, y0, x1, y1 = (float(v) for v in mask_to_box(region.masks[0].decode()))
            cat = next(c["id"] for c in categories if c["name"] == region.category["en"].replace(" ", "_"))
            annotations.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": cat,
                    "iscrowd": 0,
                    "area": (x1 - x0) * (y1 - y0),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
        (root / "my" / "annotations" / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories})
        )


def _recipe_checked() -> list[str]:
    commands = recipe_commands()
    assert [c.split()[:4] for c in commands[:3]] == [["python", "-m", "data_pipeline", "convert"]] * 3
    assert "scripts/train.py" in commands[-1] and "experiment=quickstart_own_data" in commands[-1]
    return commands


def _argv(command: str, root: Path) -> list[str]:
    """A documented command's arguments, ``$PWD`` being ``root``, leading VAR=value dropped."""
    argv = shlex.split(os.path.expandvars(command.replace("$PWD", str(root))))
    while "=" in argv[0]:
        argv.pop(0)
    assert argv[0] == "python"
    return argv


def test_own_data_recipe_converts_then_composes(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from data_pipeline.cli import main as data_pipeline_main
    from pam.modeling.config import PAMConfig
    from pam.train.data import build_dataset

    commands = _recipe_checked()
    write_coco_set(tmp_path)
    monkeypatch.chdir(tmp_path)
    for command in commands[:3]:
        assert data_pipeline_main(_argv(command, tmp_path)[3:]) == 0, command
    overrides = [a for a in _argv(commands[-1], tmp_path)[2:] if "=" in a]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.get("sam2_teach") is None and cfg.data.get("generate") is None  # nothing generated or taught
    model = PAMConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    assert model.sam2.checkpoint is None
    for split in ("train", "val", "test"):
        samples = list(build_dataset(cfg.data, split, model.token_layout()))
        assert len(samples) == 3, split
        assert {s["task"] for s in samples} == {"category"}
        assert all(Path(s["image_key"]).is_file() for s in samples)


@pytest.mark.soak
def test_own_data_recipe_converts_then_trains(tmp_path):
    commands = _recipe_checked()
    write_coco_set(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for command in commands:
        argv = _argv(command, tmp_path)
        argv[0] = sys.executable
        argv = [str(REPO / a) if a == "scripts/train.py" else a for a in argv]
        if "scripts/train.py" in command:
            argv += SHORT
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    out = tmp_path / "runs" / "mine"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_predictions"] == 2 and 0.0 <= metrics["category_accuracy"] <= 1.0
    assert "mask_iou" in metrics  # the converted polygons are the true masks
    assert (out / "report.md").is_file()
    rows = [json.loads(line) for line in open(out / "predictions.jsonl")]
    assert {r["task"] for r in rows} == {"category"}
    assert np.all([r["reference"] for r in rows])
