"""Refinement end to end against a real chat-completions server on 127.0.0.1: Set-of-Mark requests,
interruption and resume, cache hits, retries, sharding, manifest counts; the output trains the
dataset layer."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from data_pipeline.cli import main
from data_pipeline.records import iter_records, write_records
from data_pipeline.som import Mark, contour, render
from pam.data.datasets import load_region_dataset
from pam.data.schema import Record
from pam.data.video import write_video_mp4

from .helpers.chat_server import ChatServer, Fault, last_user_text

H, W = 40, 60
LABELS = ["cup", "dog", "tree", "lamp", "broken", "chair", "plate", "book"]


def answer_for(request) -> str:
    """Deterministic: the fields asked for, written from the label given in the prompt."""
    text = last_user_text(request)
    label = re.search(r'source dataset is: "(.*?)"', text).group(1)
    if label == "broken":
        return "I cannot answer that."
    keys = re.findall(r'"(\w+)"', text.split("exactly the keys", 1)[1])
    values = {
        "category": label,
        "definition": f"a {label} is a common thing people know well",
        "function": f"a {label} is used every day by people at home",
        "short_caption": f"a {label} seen in the picture",
        "detailed_caption": f"this {label} stands in the middle of the picture with a plain background behind it",
    }
    return "```json\n" + json.dumps({k: values[k] for k in keys}) + "\n```"


def images_of(request) -> list[Image.Image]:
    parts = request["messages"][-1]["content"]
    return [
        Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1])))
        for p in parts
        if p["type"] == "image_url"
    ]


@pytest.fixture
def coco_like(tmp_path):
    """4 images x 2 regions with a category only (as a converter writes them)."""
    records = []
    for i in range(4):
        img = np.random.RandomState(i).randint(0, 200, (H, W, 3), np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        regions = [
            {"box": [2.0, 2.0, 20.0, 15.0], "category": LABELS[2 * i]},
            {"box": [30.0, 20.0, 20.0, 15.0], "category": LABELS[2 * i + 1]},
        ]
        records.append(Record.from_dict({"id": f"img{i}", "image": f"{i}.png", "regions": regions}))
    path = tmp_path / "in.jsonl"
    write_records(path, records)
    return path


def refine(tmp_path, server, *extra, out="out.jsonl"):
    return main(
        [
            "refine",
            "--input",
            str(tmp_path / "in.jsonl"),
            "--out",
            str(tmp_path / out),
            "--base-url",
            server.base_url,
            "--model",
            "vlm-test",
            "--api-key-env",
            "none",
            "--max-tries",
            "2",
            "--backoff",
            "0.01",
            "--timeout",
            "5",
            "--workers",
            "2",
            "--chunk-records",
            "2",
            "--fields",
            "definition",
            "function",
            "short_caption",
            "detailed_caption",
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        ]
    )


def manifest(path):
    return json.loads(path.read_text())


def test_refine_interrupt_resume_cache_retry_and_manifest(tmp_path, coco_like, capsys):
    # run 1: the server dies after 4 answers -> the first chunk (2 records, 4 regions) is written
    with ChatServer(lambda r, i: answer_for(r) if i < 4 else Fault(500)) as server:
        assert refine(tmp_path, server) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    first = manifest(tmp_path / "out.manifest.json")
    assert [r.id for r in iter_records(tmp_path / "out.jsonl")] == ["img0", "img1"]
    assert first["counts"]["stopped_by_error"] == 1 and first["steps"]["records"]["kept"] == 2
    assert first["usage"]["requests"] == 4 and first["usage"]["retries"] >= 1
    request = server.requests[0]
    assert request["model"] == "vlm-test" and request["temperature"] == 0.0 and request["max_tokens"] == 512
    (overlay,) = images_of(request)
    assert overlay.size == (W, H)

    # run 2: a healthy server that answers 429 once; only the last two records are asked for
    with ChatServer(lambda r, i: Fault(429) if i == 0 else answer_for(r)) as server:
        assert refine(tmp_path, server) == 0
    second = json.loads(capsys.readouterr().out)
    asked = sorted(re.search(r'is: "(.*?)"', last_user_text(r)).group(1) for r in server.requests[1:])
    assert asked == ["book", "broken", "chair", "plate"] and server.count == 5
    assert (
        second["counts"]["records_already_done"] == 2
        and second["usage"]["retries"] == 1
        and second["usage"]["requests"] == 4
    )
    assert second["steps"]["regions"] == {"kept": 3, "dropped": {"unparsable_answer": 1}, "dropped_total": 1}
    assert second["prompts"] == {"refine_image": 1, "refine_video": 1} and second["backend"]["model"] == "vlm-test"
    assert (
        second["usage"]["prompt_tokens"] == 40 and second["usage"]["completion_tokens"] == 20
    )  # 10 + 5 per answered request

    records = {r.id: r for r in iter_records(tmp_path / "out.jsonl")}
    assert sorted(records) == ["img0", "img1", "img2", "img3"]
    assert [g.category["en"] for g in records["img2"].regions] == ["chair"]  # "broken" dropped
    assert records["img0"].regions[1].definition == {"en": "a dog is a common thing people know well"}

    # run 3: same requests into a new output, same cache -> no request reaches the server
    with ChatServer(lambda r, i: Fault(500)) as server:
        assert refine(tmp_path, server, out="again.jsonl") == 0
    third = json.loads(capsys.readouterr().out)
    assert server.count == 0 and third["usage"]["cache_hits"] == 8 and third["usage"]["requests"] == 0
    assert (tmp_path / "again.jsonl").read_text().splitlines() == sorted(
        (tmp_path / "out.jsonl").read_text().splitlines()
    )

    ds = load_region_dataset(str(tmp_path / "out.jsonl"), tasks=["explain", "short_caption", "detailed_caption"])
    assert len(ds) == 7 * 3 and ds[0]["pixels"].shape == (H, W, 3)


def test_refine_shards_rate_limit_and_merge(tmp_path, coco_like, capsys):
    with ChatServer(lambda r, i: answer_for(r)) as server:
        for shard in (0, 1):
            assert refine(tmp_path, server, "--num-shards", "2", "--shard", str(shard), "--rpm", "600") == 0
    capsys.readouterr()
    shards = [tmp_path / f"out.shard-0000{k}-of-00002.jsonl" for k in (0, 1)]
    assert [[r.id for r in iter_records(p)] for p in shards] == [["img0", "img2"], ["img1", "img3"]]
    assert server.count == 8
    within_shard = [b - a for a, b in zip(server.times[:4], server.times[1:4])]
    assert all(gap >= 0.1 * 0.7 for gap in within_shard), within_shard  # 600 per minute: one per 0.1 s
    assert main(["merge", "--inputs", *map(str, shards), "--out", str(tmp_path / "all.jsonl")]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert (
        merged["records"] == 4
        and merged["usage"]["requests"] == 8
        and merged["steps"]["regions"]["dropped"] == {"unparsable_answer": 1}
    )
    assert main(["merge", "--inputs", str(shards[0]), str(shards[0]), "--out", str(tmp_path / "dup.jsonl")]) == 2
    assert "written twice" in capsys.readouterr().err


def test_refine_overwrite_keeps_source_label_and_video_keyframes(tmp_path, capsys):
    frames = np.zeros((8, 32, 48, 3), np.uint8)
    masks = {}
    for t in range(8):
        m = np.zeros((32, 48), bool)
        m[8:20, 4 + 3 * t : 16 + 3 * t] = True
        frames[t][m] = 200
        if t % 2 == 0:
            from pycocotools import mask as mask_utils

            enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            masks[str(t)] = {"size": [32, 48], "counts": enc["counts"].decode()}
    write_video_mp4(str(tmp_path / "v.mp4"), frames)
    write_records(
        tmp_path / "in.jsonl",
        [Record.from_dict({"id": "v", "video": "v.mp4", "regions": [{"masks": masks, "category": "cup"}]})],
    )
    with ChatServer(lambda r, i: answer_for(r).replace('"category": "cup"', '"category": "mug"')) as server:
        assert (
            main(
                [
                    "refine",
                    "--input",
                    str(tmp_path / "in.jsonl"),
                    "--out",
                    str(tmp_path / "out.jsonl"),
                    "--base-url",
                    server.base_url,
                    "--model",
                    "m",
                    "--api-key-env",
                    "none",
                    "--fields",
                    "category",
                    "short_caption",
                    "--overwrite",
                    "category",
                    "--keyframes",
                    "3",
                ]
            )
            == 0
        )
    capsys.readouterr()
    (region,) = next(iter_records(tmp_path / "out.jsonl")).regions
    assert (
        region.category == {"en": "mug"}
        and region.extra["source_category"] == "cup"
        and region.short_caption == {"en": "a cup seen in the picture"}
    )
    assert len(images_of(server.requests[0])) == 3 and "keyframes 0, 4, 6" in last_user_text(server.requests[0])


def test_set_of_mark_overlay_draws_tinted_mask_contour_and_number():
    img = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[10:40, 10:50] = True
    out = np.asarray(
        render(
            img,
            [
                Mark(1, mask, np.array([10, 10, 50, 40], np.float32)),
                Mark(2, None, np.array([55, 45, 75, 58], np.float32)),
            ],
            alpha=0.5,
        )
    )
    assert tuple(out[0, 0]) == (100, 100, 100)  # untouched background
    assert tuple(out[10, 30]) == (230, 25, 75)  # contour in colour 1
    assert tuple(out[15, 15]) == (
        round(0.5 * 100 + 0.5 * 230),
        round(0.5 * 100 + 0.5 * 25),
        round(0.5 * 100 + 0.5 * 75),
    )  # tinted inside
    assert tuple(out[45, 55]) == (60, 180, 75)  # box outline of mark 2 in colour 2
    tag = out[18:32, 22:38]
    assert (tag == 255).all(axis=-1).any() and (tag < 60).all(
        axis=-1
    ).any()  # white tag with dark digit near the centroid
    ring = contour(mask, 1)
    assert ring.sum() == 2 * (30 + 40) - 4 and not ring[20, 30]


def test_refine_with_a_local_vision_language_model(tmp_path, coco_like, capsys):
    """The transformers backend in the pipeline: a tiny random Qwen2-VL answers gibberish, so every
    region is dropped as unparsable, but each request went through the model with its overlay."""
    from .helpers.tiny_chat_models import save_tiny_qwen_vl

    model = save_tiny_qwen_vl(tmp_path / "vlm")
    write_records(tmp_path / "one.jsonl", [next(iter_records(tmp_path / "in.jsonl"))])
    args = [
        "refine",
        "--input",
        str(tmp_path / "one.jsonl"),
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "local.jsonl"),
        "--backend",
        "transformers",
        "--model-path",
        str(model),
        "--fields",
        "short_caption",
        "--max-tokens",
        "4",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    run = json.loads(
        printed[printed.index("{\n") :]
    )  # deepspeed (imported by transformers) may log a line to stdout first
    assert run["backend"] == {
        "backend": "transformers-vision",
        "model": "vlm",
        "path": str(model),
        "cache_dir": str(tmp_path / "local.cache"),
    }
    assert run["usage"]["requests"] == 2 and 0 < run["usage"]["completion_tokens"] <= 2 * 4
    assert run["steps"]["regions"]["dropped"] == {"unparsable_answer": 2} and run["steps"]["records"]["dropped"] == {
        "no_region_left": 1
    }
    assert main(args) == 0  # a re-run answers from the cache (and never loads the model)
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{\n") :])["usage"]["cache_hits"] == 2


def test_resumable_output_cuts_a_half_written_line(tmp_path):
    from data_pipeline.media import ResumableOutput
    from data_pipeline.records import record_line

    done = Record.from_dict({"id": "a", "image": "a.png", "regions": []})
    path = tmp_path / "out.jsonl"
    path.write_text(record_line(done) + "\n" + '{"id": "b", "image": "b.p')  # killed mid-write
    output = ResumableOutput(str(path))
    assert output.done == {"a"} and path.read_text() == record_line(done) + "\n"
    output.append([Record.from_dict({"id": "b", "image": "b.png", "regions": []})])
    assert [r.id for r in iter_records(path)] == ["a", "b"]
