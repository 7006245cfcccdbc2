"""The region-annotation schema: validation messages, round trips, mask decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pam.data.masks import rle_string_to_runs
from pam.data.readers import read_jsonl, write_jsonl
from pam.data.schema import MaskAnnotation, Record, SchemaError


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode()}


def _mask(h: int = 20, w: int = 30) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[4:11, 6:19] = True
    return m


IMAGE_LINE = {
    "id": "img-1",
    "image": "images/a.png",
    "height": 20,
    "width": 30,
    "source": "hand",
    "regions": [
        {
            "mask": _rle(_mask()),
            "box": [6, 4, 13, 7],
            "points": [[10, 6], [12.5, 8]],
            "point_labels": [1, 0],
            "category": "tomato",
            "definition": {"en": "a red fruit", "zh": "一种红色的果实"},
            "function": "eaten",
            "short_caption": "a tomato",
            "detailed_caption": {"en": "A large tomato."},
            "extra": {"annotation_id": 7},
        },
        {
            "mask": [[1, 1, 8, 1, 8, 8, 1, 8]],
            "category": "box",
            "conversations": [
                {"role": "user", "content": "<image>\nWhat is it?"},
                {"role": "assistant", "content": "a box"},
            ],
            "language": "en",
            "task": "conversation",
        },
    ],
    "extra": {"split": "train"},
}

VIDEO_LINE = {
    "id": "vid-1",
    "frames": ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg", "00005.jpg"],
    "frames_root": "frames/vid-1",
    "regions": [
        {
            "masks": {"0": _rle(_mask()), "5": _rle(_mask())},
            "boxes": {"0": [6, 4, 13, 7]},
            "points": {"2": [[10, 6]]},
            "point_labels": {"2": [1]},
            "category": {"en": "kite", "zh": "风筝"},
            "events": [
                {"start_frame": 0, "end_frame": 2, "caption": "the kite moves right"},
                {"start_frame": 3, "end_frame": 5, "caption": {"en": "the kite stops", "zh": "风筝停了下来"}},
            ],
        }
    ],
}


@pytest.mark.parametrize(
    "line",
    [
        IMAGE_LINE,
        VIDEO_LINE,
        {"id": "v2", "video": "clip.mp4", "regions": [{"boxes": {"3": [0, 0, 4, 4]}, "category": "x"}]},
    ],
)
def test_record_dict_record_is_identity(line):
    record = Record.from_dict(json.loads(json.dumps(line)), "mem:1")
    again = Record.from_dict(json.loads(json.dumps(record.to_dict())), "mem:1")
    assert again == record
    assert again.to_dict() == record.to_dict()


def test_parsed_values_follow_the_schema():
    image = Record.from_dict(IMAGE_LINE, "mem:1")
    region = image.regions[0]
    assert image.media_type == "image"
    assert region.boxes == {0: [6.0, 4.0, 13.0, 7.0]}
    assert region.points == {0: [[10.0, 6.0], [12.5, 8.0]]} and region.point_labels == {0: [1, 0]}
    assert region.category == {"en": "tomato"} and region.definition["zh"] == "一种红色的果实"
    assert image.regions[1].conversations[1] == {"role": "assistant", "content": "a box"}
    video = Record.from_dict(VIDEO_LINE, "mem:2")
    assert video.media_type == "video"
    assert sorted(video.regions[0].masks) == [0, 5]
    assert video.regions[0].annotated_frames() == [0, 2, 5]
    assert video.regions[0].events[1].caption == {"en": "the kite stops", "zh": "风筝停了下来"}


def test_points_without_labels_default_to_positive():
    rec = Record.from_dict({"id": "a", "image": "a.png", "regions": [{"points": [[1, 2], [3, 4]]}]})
    assert rec.regions[0].point_labels == {0: [1, 1]}


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"regions": [{"box": [1, 2, 3]}]}, "regions[0].box"),
        ({"regions": [{"category": {"fr": "tomate"}}]}, "regions[0].category"),
        ({"regions": [{"points": [[1, 2]], "point_labels": [2]}]}, "regions[0].point_labels"),
        ({"regions": [{"mask": {"size": [4, 4]}}]}, "regions[0].mask"),
        ({"regions": [{"masks": {"0": [[0, 0, 1, 0, 1, 1]]}}]}, "regions[0].masks"),
        ({"regions": [{"catgory": "typo"}]}, "regions[0].catgory"),
        ({"regions": [{"events": [{"start_frame": 0, "end_frame": 1, "caption": "x"}]}]}, "regions[0].events"),
        ({"video": "also.mp4"}, "image|video|frames"),
        ({"height": 0}, "height"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_errors_name_file_line_and_field(patch, field):
    line = {"id": "bad", "image": "a.png", "regions": []}
    line.update(patch)
    with pytest.raises(SchemaError) as err:
        Record.from_dict(line, "train.jsonl:17")
    assert str(err.value).startswith("train.jsonl:17")
    assert f"`{field}`" in str(err.value)


def test_video_region_frames_must_exist():
    line = json.loads(json.dumps(VIDEO_LINE))
    line["regions"][0]["boxes"] = {"9": [0, 0, 2, 2]}
    with pytest.raises(SchemaError, match="frame 9 but the record has 6 frames"):
        Record.from_dict(line, "v.jsonl:3")


def test_jsonl_reader_reports_line_numbers_and_resolves_paths(tmp_path):
    path = tmp_path / "ann" / "data.jsonl"
    write_jsonl(str(path), [Record.from_dict(IMAGE_LINE), Record.from_dict(VIDEO_LINE)])
    records = read_jsonl(str(path), root=tmp_path / "media")
    assert records[0].image == str(tmp_path / "media" / "images" / "a.png")
    assert records[1].frames[2] == str(tmp_path / "media" / "frames" / "vid-1" / "00002.jpg")
    assert records[1].frames_root is None
    # default root: the file's folder
    assert read_jsonl(str(path))[0].image == str(tmp_path / "ann" / "images" / "a.png")
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["regions"][0]["boxes"] = {"0": [1, 2]}
    path.write_text("\n".join([lines[0], json.dumps(bad), "{not json"]) + "\n")
    with pytest.raises(SchemaError, match=r"data.jsonl:2 \(id vid-1\): field `regions\[0\].boxes.0`"):
        read_jsonl(str(path))
    assert [r.id for r in read_jsonl(str(path), on_error="skip")] == ["img-1"]
    path.write_text(lines[0] + "\n" + "{not json\n")
    with pytest.raises(SchemaError, match="data.jsonl:2: invalid JSON"):
        read_jsonl(str(path))
    path.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(SchemaError, match="occurs more than once"):
        read_jsonl(str(path))


def test_skip_mode_drops_invalid_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps(IMAGE_LINE)
    path.write_text(good + "\n" + json.dumps({"id": "x", "image": "a.png", "regions": [{"box": [1]}]}) + "\n")
    assert [r.id for r in read_jsonl(str(path), on_error="skip")] == ["img-1"]


def test_rle_runs_match_pycocotools_and_reject_garbage():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((37, 23)) < rng.uniform(0.05, 0.95)
        rle = _rle(m)
        runs = rle_string_to_runs(rle["counts"])
        assert sum(runs) == m.size
        decoded = MaskAnnotation(rle=rle).decode(37, 23)
        assert np.array_equal(decoded, m)
        # the runs reproduce the column-major mask
        flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
        assert np.array_equal(flat.reshape(23, 37).T, m)
    for counts in ["", "abc", _rle(_mask())["counts"] + "5"]:
        with pytest.raises(ValueError):
            MaskAnnotation(rle={"size": [20, 30], "counts": counts}).decode(20, 30)
    with pytest.raises(ValueError, match="differs from image size"):
        MaskAnnotation(rle=_rle(_mask())).decode(21, 30)


def test_polygon_and_uncompressed_rle_decode_like_pycocotools():
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0, 2.0, 9.0]]
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 20, 30))).astype(bool)
    assert np.array_equal(MaskAnnotation(polygons=poly).decode(20, 30), ref)
    assert ref.sum() > 50
    m = _mask()
    runs = rle_string_to_runs(_rle(m)["counts"])
    assert np.array_equal(MaskAnnotation(rle={"size": [20, 30], "counts": runs}).decode(20, 30), m)
    assert np.array_equal(MaskAnnotation.from_mask(m).decode(), m)
