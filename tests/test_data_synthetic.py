"""The synthetic quick-start generator: fast, deterministic, valid, learnable by design."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pam.data.readers import read_jsonl
from pam.data.schema import Record
from pam.data.synthetic import SyntheticConfig, generate_quickstart, make_image_record, make_video_record
from pam.data.synthetic_shapes import BACKGROUNDS, CATEGORIES, DISTRACTOR_RGB, SHAPE_WORDS, position_words
from pam.data.video import read_video

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(num_train=40, num_val=6, num_test=4, num_train_videos=4, num_val_videos=2, num_test_videos=2)


@pytest.fixture(scope="module")
def default_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    start = time.perf_counter()
    files = generate_quickstart(str(out), SyntheticConfig())
    return out, files, time.perf_counter() - start


def test_default_is_fast_and_complete(default_data):
    out, files, seconds = default_data
    assert seconds < 10
    assert sorted(files) == ["test", "test_video", "train", "train_video", "val", "val_video"]
    counts = {k: sum(1 for _ in open(v)) for k, v in files.items()}
    assert counts == {"train": 320, "val": 40, "test": 40, "train_video": 24, "val_video": 6, "test_video": 6}
    info = json.loads((out / "info.json").read_text())
    assert info["config"]["seed"] == 0 and len(info["categories"]) == 8


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = generate_quickstart(str(tmp_path / "a"), SyntheticConfig(**SMALL))
    b = generate_quickstart(str(tmp_path / "b"), SyntheticConfig(**SMALL))
    c = generate_quickstart(str(tmp_path / "c"), SyntheticConfig(seed=1, **SMALL))
    for split in a:
        assert Path(a[split]).read_bytes() == Path(b[split]).read_bytes()
    assert Path(a["train"]).read_bytes() != Path(c["train"]).read_bytes()
    assert (tmp_path / "a/images/train/000003.png").read_bytes() == (
        tmp_path / "b/images/train/000003.png"
    ).read_bytes()


def test_every_line_is_valid_and_round_trips(default_data):
    out, files, _ = default_data
    for path in files.values():
        for lineno, line in enumerate(open(path), start=1):
            data = json.loads(line)
            record = Record.from_dict(data, f"{path}:{lineno}")
            assert record.to_dict() == data  # the files are written in canonical form
        records = read_jsonl(path)
        assert all(Path(r.image or r.video or r.frames[0]).is_file() for r in records)


def test_categories_are_distinct_in_colour_and_shape():
    assert len(CATEGORIES) >= 8
    assert (
        len({c.rgb for c in CATEGORIES})
        == len({c.shape for c in CATEGORIES})
        == len({c.name for c in CATEGORIES})
        == len(CATEGORIES)
    )
    assert len({c.color for c in CATEGORIES}) == len(CATEGORIES) and all(c.zh and c.color_zh for c in CATEGORIES)
    palette = {c.rgb for c in CATEGORIES}
    assert not palette & ({rgb for _, rgb in BACKGROUNDS} | {DISTRACTOR_RGB})


def test_masks_match_the_drawn_objects(default_data):
    out, files, _ = default_data
    records = read_jsonl(files["train"])
    by_category = {}
    sizes = set()
    for rec in records:
        pixels = np.asarray(Image.open(rec.image).convert("RGB"))
        sizes.add(pixels.shape[:2])
        assert len(rec.regions) == 1
        region = rec.regions[0]
        mask = region.masks[0].decode(*pixels.shape[:2])
        rgb = tuple(region.extra["rgb"])
        coloured = np.all(pixels == rgb, axis=-1)
        assert np.array_equal(mask, coloured)  # the mask is exactly the object's pixels
        side = min(pixels.shape[:2])
        ys, xs = np.nonzero(mask)
        assert 0.25 * side <= max(np.ptp(xs), np.ptp(ys)) + 1 <= 0.62 * side  # the object dominates
        cat = next(c for c in CATEGORIES if c.name == region.category["en"])
        assert (cat.rgb, cat.shape) == (rgb, region.extra["shape"])
        by_category.setdefault(cat.name, 0)
        by_category[cat.name] += 1
        en_pos = position_words(mask)[0]
        assert en_pos in region.short_caption["en"] and cat.color in region.short_caption["en"]
        assert region.short_caption["zh"].endswith(position_words(mask)[1]) and cat.zh in region.category["zh"]
        assert any(w in region.short_caption["en"] for w in ("small", "medium", "large"))
    assert len(by_category) == 8 and min(by_category.values()) >= 20  # every category well represented
    assert {(256, 256), (240, 320), (320, 240)} <= sizes  # other sizes exercise resizing


def test_video_masks_follow_the_object(default_data):
    out, files, _ = default_data
    records = read_jsonl(files["train_video"])
    assert {r.video is not None for r in records} == {True, False}  # mp4 and frame folders
    for rec in records[:4]:
        region = rec.regions[0]
        n = len(region.masks)
        assert 16 <= n <= 32 and sorted(region.masks) == list(range(n))
        assert region.events[0].start_frame == 0 and region.events[-1].end_frame == n - 1
        assert all(a.end_frame + 1 == b.start_frame for a, b in zip(region.events, region.events[1:]))
        rgb = np.array(region.extra["rgb"])
        if rec.video is not None:
            frames = read_video(rec.video, [0, n - 1])
        else:
            frames = np.stack([np.asarray(Image.open(rec.frames[i])) for i in (0, n - 1)])
        for frame, t in zip(frames, (0, n - 1)):
            mask = region.masks[t].decode()
            err = np.abs(frame.astype(int) - rgb).sum(-1)
            inner = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)
            tol = 0 if rec.frames is not None else 60  # PNG frames are exact; H.264 blurs colours a little
            assert (err[inner] <= tol).mean() > 0.97
            assert (err[~mask] > 60).all() if rec.frames is not None else (err[~mask] > 60).mean() > 0.99
        for event in region.events:
            assert event.caption["en"].startswith(
                f"the {region.extra['color']} {SHAPE_WORDS[region.extra['shape']]} {region.category['en']} "
            )
            assert any(w in event.caption["en"] for w in ("moves", "stops", "stays still"))
            if "moves right" in event.caption["en"]:
                x0 = np.nonzero(region.masks[event.start_frame].decode())[1].mean()
                x1 = np.nonzero(region.masks[event.end_frame].decode())[1].mean()
                assert x1 > x0


def test_harder_knobs():
    cfg = SyntheticConfig(
        objects_per_image=3, max_rotation=40.0, allow_occlusion=True, shared_colors=True, max_distractors=2
    )
    regions = [r for i in range(30) for r in make_image_record(cfg, "train", i)[0].regions]
    assert len(regions) > 60
    pairs = {(r.category["en"], r.extra["color"]) for r in regions}
    assert len(pairs) > 20  # colours no longer follow categories
    record, pixels = make_image_record(cfg, "train", 0)
    union = np.zeros(pixels.shape[:2], bool)
    for region in record.regions:
        mask = region.masks[0].decode()
        assert not (mask & union).any()  # visible parts do not overlap
        union |= mask
    _, frames = make_video_record(SyntheticConfig(), "val", 1)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (128, 128, 3)


def test_cli_writes_the_dataset(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pam.cli",
            "make-data",
            "--out",
            str(out),
            "--num-train",
            "5",
            "--num-val",
            "2",
            "--num-test",
            "1",
            "--num-train-videos",
            "1",
            "--num-val-videos",
            "1",
            "--num-test-videos",
            "1",
            "--seed",
            "3",
            "--max-rotation",
            "10",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert json.loads(result.stdout)["out"] == str(out)
    assert sum(1 for _ in open(out / "train.jsonl")) == 5
    assert json.loads((out / "info.json").read_text())["config"]["max_rotation"] == 10.0


def test_clips_shorter_than_two_events_hold_one_event():
    cfg = SyntheticConfig(video_size=(32, 32), min_video_frames=4, max_video_frames=4, min_event_frames=6)
    record, frames = make_video_record(cfg, "train", 0)
    assert frames.shape[0] == 4
    assert [(e.start_frame, e.end_frame) for e in record.regions[0].events] == [(0, 3)]
    with pytest.raises(ValueError, match="min_event_frames"):
        SyntheticConfig(min_event_frames=1)
