"""Streaming-caption data: events from masklet motion, given intervals or shot cuts; captions in
order with the previous caption as context, from a real 127.0.0.1 chat server; the records train
the debug PAM for a few steps."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_pipeline.cli import main
from data_pipeline.records import iter_records, write_records
from data_pipeline.stream import StreamConfig, segment_events, shot_cuts
from pam.data.schema import MaskAnnotation, Record

from .helpers.chat_server import ChatServer, last_user_text

ROOT = Path(__file__).resolve().parents[1]
N, S = 12, 64  # frames, frame size


def square_video(cut_at: int | None = None):
    """A 16 px square sliding right 3 px per frame over frames 0-5, then still; optional brightness cut."""
    frames, masks = [], []
    for t in range(N):
        img = np.full((S, S, 3), 40 if cut_at is None or t < cut_at else 180, np.uint8)
        x = 4 + 3 * min(t, 5)
        m = np.zeros((S, S), bool)
        m[24:40, x : x + 16] = True
        img[m] = (220, 30, 30)
        frames.append(img)
        masks.append(m)
    return frames, masks


def video_record(tmp_path: Path, rid="sq", cut_at=None, label="red square") -> Record:
    frames, masks = square_video(cut_at)
    folder = tmp_path / "frames" / rid
    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:05d}.png")
    region = {"masks": {str(t): MaskAnnotation.from_mask(m).to_json() for t, m in enumerate(masks)}, "category": label}
    return Record.from_dict(
        {
            "id": rid,
            "frames": [f"{t:05d}.png" for t in range(N)],
            "frames_root": f"frames/{rid}",
            "height": S,
            "width": S,
            "regions": [region],
        }
    )


def test_events_from_motion_intervals_and_shot_cuts(tmp_path):
    record = video_record(tmp_path)
    region = record.regions[0]
    # moving on steps 0->1 ... 4->5 (3 px per frame = 0.19 square sizes), still from 5->6 on
    assert segment_events(region, N - 1, StreamConfig()) == [(0, 4), (5, 11)]
    assert segment_events(region, N - 1, StreamConfig(motion_threshold=0.5)) == [(0, 11)]  # never "moving"
    assert segment_events(region, N - 1, StreamConfig(min_event_frames=6)) == [(0, 11)]  # the 5-frame event merges
    assert segment_events(region, N - 1, StreamConfig(intervals=((0, 3), (4, 20)))) == [(0, 3), (4, 11)]
    frames, _ = square_video(cut_at=8)
    cuts = shot_cuts(np.stack(frames), list(range(N)), threshold=0.5)
    assert cuts == {8}
    assert segment_events(region, N - 1, StreamConfig(), cuts=cuts) == [(0, 4), (5, 7), (8, 11)]
    with pytest.raises(ValueError, match="intervals"):
        StreamConfig(intervals=((0, 5), (3, 8)))


def narrator(request, index):
    text = last_user_text(request)
    previous = re.search(r'previous event was: "(.*?)"', text).group(1)
    span = re.search(r"frames (\d+) to (\d+)", text).groups()
    caption = (
        "the red square slides to the right"
        if previous.startswith("none")
        else f"after it slides, the square stays still (frames {span[0]}-{span[1]})"
    )
    return json.dumps({"caption": caption})


def stream(tmp_path, server, out="stream.jsonl"):
    return main(
        [
            "stream",
            "--input",
            str(tmp_path / "videos.jsonl"),
            "--out",
            str(tmp_path / out),
            "--base-url",
            server.base_url,
            "--model",
            "vlm",
            "--api-key-env",
            "none",
            "--keyframes",
            "2",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )


def test_stream_captions_in_order_resume_and_train(tmp_path, capsys):
    write_records(
        tmp_path / "videos.jsonl", [video_record(tmp_path, "sq"), video_record(tmp_path, "sq2", label="square")]
    )  # same pixels, other label
    with ChatServer(narrator) as server:
        assert stream(tmp_path, server) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert (
        server.count == 4 and manifest["steps"]["events"]["kept"] == 4 and manifest["prompts"] == {"stream_caption": 1}
    )
    second = [r for r in server.requests if 'previous event was: "the red square slides' in last_user_text(r)]
    assert len(second) == 2 and all("frames 5 to 11" in last_user_text(r) for r in second)
    records = list(iter_records(tmp_path / "stream.jsonl"))
    events = records[0].regions[0].events
    assert [(e.start_frame, e.end_frame, e.caption["en"]) for e in events] == [
        (0, 4, "the red square slides to the right"),
        (5, 11, "after it slides, the square stays still (frames 5-11)"),
    ]

    with ChatServer(narrator) as server:  # everything is done: nothing is asked again
        assert stream(tmp_path, server) == 0
    assert server.count == 0 and json.loads(capsys.readouterr().out)["counts"]["records_already_done"] == 2

    losses = train_few_steps(tmp_path, tmp_path / "stream.jsonl")
    assert len(losses) == 2 and all(np.isfinite(losses))


def train_few_steps(tmp_path: Path, records: Path) -> list[float]:
    """The quick-start trainer on the streaming records (video_caption only), 2 optimiser steps."""
    from hydra import compose, initialize_config_dir

    from pam.train.trainer import Trainer

    for name in ("train", "val", "test"):
        for suffix in ("", "_video"):
            shutil.copy(records, tmp_path / f"{name}{suffix}.jsonl")
    overrides = [
        "experiment=quickstart",
        "model.sam2.checkpoint=null",  # a random debug SAM 2: no teaching step
        "~sam2_teach",
        "data=quickstart_video",
        f"data.root={tmp_path}",
        "data.tasks=[video_caption]",
        "data.track_frames=2",
        "model.video_num_frames=2",
        "data.train.epoch_size=2",
        "~next_stage",
        "stage.max_steps=2",
        "trainer.global_batch_size=1",
        "trainer.micro_batch_size=1",
        f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.feature_cache=null",
        "trainer.logging.wandb.mode=disabled",
        "trainer.logging.progress_bar=false",
        "trainer.evaluation.enabled=false",
        "trainer.logging.every=1",
        "trainer.validation.every=1000",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(cfg).train()
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["train/loss"] for r in rows if "train/loss" in r]
