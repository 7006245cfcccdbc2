"""Readers: released PAM-data lines (upstream field names).

COCO / LVIS / PACO: tests/test_data_pipeline_converters.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pam.data.datasets import RegionDataset, RegionDatasetConfig, load_region_dataset
from pam.data.prompt_sampling import PromptSamplingConfig
from pam.data.readers import infer_task, read_upstream_jsonl, upstream_turns
from pam.data.schema import Record, SchemaError
from pam.processing.prompts import task_prompt

UPSTREAM_IMAGE = {
    "type": "image",
    "image": "coco/train2017/000000000139.jpg",
    "bbox": [10.5, 20.0, 30.0, 40.0],
    "points": [[20.0, 30.0], [25.0, 35.0], [22.0, 50.0]],
    "labels": [1, 1, 1],
    "conversations": [
        {"from": "human", "value": "Classify this subject and provide its label.\n<image>"},
        {"from": "gpt", "value": "potted plant"},
    ],
    "obj_id": 3,
}

UPSTREAM_VIDEO = {
    "type": "video",
    "image_root": "sav/frames/sav_000001",
    "frames": [f"{i:05d}.jpg" for i in range(8)],
    "masked_frames": ["00000.jpg"],
    "bbox": [[4.0, 6.0, 10.0, 12.0], [5.0, 6.0, 10.0, 12.0]],
    "points": [[[8.0, 9.0], [9.0, 10.0]], [[9.0, 9.0]]],
    "labels": [[1, 1], [1]],
    "conversations": [
        {"from": "human", "value": "<image>\n对该视频中的目标对象提供一个描述。\n历史描述：无"},
        {"from": "gpt", "value": "一只狗在草地上奔跑"},
    ],
    "obj_id": 1,
    "id": "sav_000001_1",
}


def _write_lines(path, items):
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")


def test_upstream_image_line(tmp_path):
    path = tmp_path / "lvis_obj_label_en.jsonl"
    _write_lines(path, [UPSTREAM_IMAGE, dict(UPSTREAM_IMAGE, bbox=None)])
    records = read_upstream_jsonl(str(path), root="/data")
    rec = records[0]
    assert rec.id == "lvis_obj_label_en:1" and records[1].id == "lvis_obj_label_en:2"
    assert rec.image == "/data/coco/train2017/000000000139.jpg" and rec.source == "lvis_obj_label_en"
    region = rec.regions[0]
    assert region.boxes == {0: [10.5, 20.0, 30.0, 40.0]}  # xywh, as upstream's get_bbox_coords reads it
    assert region.points == {0: UPSTREAM_IMAGE["points"]} and region.point_labels == {0: [1, 1, 1]}
    # the <image> tag moves to the front on its own line, as upstream's preprocess_multimodal does
    assert region.conversations == [
        {"role": "user", "content": task_prompt("category", "en")},
        {"role": "assistant", "content": "potted plant"},
    ]
    assert (region.task, region.language) == ("category", "en")
    assert region.extra == {"obj_id": 3}
    assert records[1].regions[0].boxes == {} and records[1].regions[0].points
    # a record survives the schema round trip
    assert Record.from_dict(rec.to_dict()) == rec


def test_upstream_video_line(tmp_path):
    path = tmp_path / "sav_stream_ch.jsonl"
    _write_lines(path, [UPSTREAM_VIDEO])
    rec = read_upstream_jsonl(str(path), root=tmp_path)[0]
    assert rec.id == "sav_000001_1" and rec.media_type == "video"
    assert rec.frames[3] == str(tmp_path / "sav/frames/sav_000001/00003.jpg")
    region = rec.regions[0]
    # per-frame lists: element k belongs to frame k; upstream prompts with element 0 on frame 0
    assert region.boxes == {0: [4.0, 6.0, 10.0, 12.0], 1: [5.0, 6.0, 10.0, 12.0]}
    assert region.points == {0: [[8.0, 9.0], [9.0, 10.0]], 1: [[9.0, 9.0]]}
    assert region.point_labels == {0: [1, 1], 1: [1]}
    assert (region.task, region.language) == ("video_caption", "zh")
    assert region.extra == {"obj_id": 1, "masked_frames": ["00000.jpg"]}
    assert Record.from_dict(rec.to_dict()) == rec


def test_upstream_path_prefix_map_and_json_list(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps([dict(UPSTREAM_VIDEO, image_root="/home/someone/SAV/frames/x")]))
    rec = read_upstream_jsonl(str(path), path_prefix_map={"/home/someone/SAV": "/mnt/sav"})[0]
    assert rec.frames[0] == "/mnt/sav/frames/x/00000.jpg"


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"type": "audio"}, "`type`"),
        ({"bbox": None, "points": None}, "`bbox` and `points`"),
        ({"bbox": [1, 2, 3]}, "`bbox`"),
        ({"labels": [1, 2, 1]}, "`labels`"),
        ({"conversations": [{"from": "system", "value": "x"}]}, "`conversations[0].from`"),
        ({"image": ["a.jpg", "b.jpg"]}, "`image`"),
    ],
)
def test_upstream_errors_name_line_and_field(tmp_path, patch, message):
    path = tmp_path / "bad.jsonl"
    _write_lines(path, [UPSTREAM_IMAGE, dict(UPSTREAM_IMAGE, **patch)])
    with pytest.raises(SchemaError) as err:
        read_upstream_jsonl(str(path))
    assert str(err.value).startswith(f"{path}:2: field") and message in str(err.value)


def test_upstream_turns_keep_free_form_conversations():
    turns = upstream_turns(
        [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "a cat"}], "x:1"
    )
    assert turns[0]["content"] == "<image>\nWhat is this?"
    assert infer_task(turns[0]["content"]) == (None, None)
    assert infer_task(task_prompt("video_caption", "en", history="a dog sits")) == ("video_caption", "en")
    assert infer_task(task_prompt("detailed_caption", "zh")) == ("detailed_caption", "zh")


def test_upstream_dataset_uses_given_turns_and_points(tmp_path):
    Image.new("RGB", (80, 100), (10, 20, 30)).save(tmp_path / "img.png")
    path = tmp_path / "u.jsonl"
    _write_lines(path, [dict(UPSTREAM_IMAGE, image="img.png")])
    ds = load_region_dataset(str(path), format="upstream", prompt={"point_weight": 1.0, "box_weight": 0.0})
    sample = ds[0]
    assert sample["task"] == "category" and sample["turns"][1]["content"] == "potted plant"
    given = {tuple(p) for p in UPSTREAM_IMAGE["points"]}
    assert 1 <= len(sample["prompt"]["points"]) <= 3
    assert {tuple(p) for p in sample["prompt"]["points"].tolist()} <= given
    assert sample["gt_mask"] is None and sample["pixels"].shape == (100, 80, 3)
    boxed = load_region_dataset(str(path), format="upstream", prompt={"point_weight": 0.0, "box_weight": 1.0})[0]
    np.testing.assert_allclose(boxed["prompt"]["box"], [10.5, 20.0, 40.5, 60.0])  # xywh -> xyxy
    # a language filter drops the English file's samples
    assert len(RegionDataset(read_upstream_jsonl(str(path)), RegionDatasetConfig(languages=("zh",)))) == 0


def test_prompt_config_from_mapping_rejects_typos():
    assert PromptSamplingConfig.from_any({"point_weight": 1.0}).box_weight == 0.5
    with pytest.raises(ValueError, match="point_wieght"):
        PromptSamplingConfig.from_any({"point_wieght": 1.0})
