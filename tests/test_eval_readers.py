"""Every benchmark reader parses a small hand-written file in its official format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pam.eval import get_benchmark, list_benchmarks
from pam.eval.benchmarks.activitynet_stream import read_json_stream

H, W = 60, 80


def _image(path: Path, color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((H, W, 3), np.uint8)
    arr[10:40, 20:60] = color
    Image.fromarray(arr).save(path)


def _rle(box=(20, 10, 40, 30), h=H, w=W) -> dict:
    m = np.zeros((h, w), np.uint8, order="F")
    x, y, bw, bh = box
    m[y : y + bh, x : x + bw] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def write_osprey(tmp: Path, categories=("dog", "baseball_bat", "mug:handle")) -> Path:
    _image(tmp / "000000000139.jpg")
    _image(tmp / "000000000285.jpg", (30, 30, 200))
    data = [
        {
            "file_name": "000000000139.jpg",
            "height": H,
            "width": W,
            "categories": list(categories[:2]),
            "annotations": [
                {"bbox": [20, 10, 40, 30], "segmentation": [[20, 10, 60, 10, 60, 40, 20, 40]]},
                {"bbox": [0, 0, 10, 10], "segmentation": _rle((0, 0, 10, 10))},
            ],
        },
        {
            "file_name": "000000000285.jpg",
            "height": H,
            "width": W,
            "categories": list(categories[2:]),
            "annotations": [{"bbox": [20, 10, 40, 30], "segmentation": _rle()}],
        },
    ]
    path = tmp / "lvis_val_1k_category.json"
    path.write_text(json.dumps(data))
    return path


def write_coco_captions(tmp: Path) -> Path:
    _image(tmp / "a.jpg")
    _image(tmp / "b.jpg")
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": H, "width": W},
            {"id": 2, "file_name": "b.jpg", "height": H, "width": W},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "bbox": [20, 10, 40, 30], "caption": "a man riding a red bike"},
            {"id": 12, "image_id": 2, "bbox": [5, 5, 20, 20], "caption": "two cats sleeping on a sofa"},
            {"id": 13, "image_id": 1, "bbox": [0, 0, 30, 30], "caption": "a plate of broccoli and rice"},
        ],
    }
    path = tmp / "finetune_refcocog_val_captions.json"
    path.write_text(json.dumps(doc))
    return path


REF_L4_ROWS = [
    {
        "ori_index": 0,
        "image_id": 5,
        "file_name": "objects365_v2_00000005.jpg",
        "caption": "the red block near the top left of the picture",
        "bbox": [20.0, 10.0, 40.0, 30.0],
        "height": H,
        "width": W,
        "id": 1000,
        "split": "val",
    },
    {
        "ori_index": 1,
        "image_id": 6,
        "file_name": "objects365_v2_00000006.jpg",
        "caption": "a small dark square in the corner",
        "bbox": [0.0, 0.0, 10.0, 10.0],
        "height": H,
        "width": W,
        "id": 1001,
        "split": "val",
    },
]


def write_ref_l4(tmp: Path, kind: str = "parquet") -> Path:
    import pandas as pd

    _image(tmp / "images" / "objects365_v2_00000005.jpg")
    _image(tmp / "images" / "objects365_v2_00000006.jpg")
    path = tmp / f"ref-l4-val.{kind}"
    if kind == "parquet":
        pd.DataFrame(REF_L4_ROWS).to_parquet(path)
    else:
        path.write_text(json.dumps(REF_L4_ROWS))
    return path


def write_frames(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for t in range(n):
        arr = np.zeros((H, W, 3), np.uint8)
        arr[10:40, 5 + 2 * t : 45 + 2 * t] = (220, 40, 40)
        name = f"{t:05d}.jpg"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def write_hc_stvg(tmp: Path) -> Path:
    write_frames(tmp / "videos" / "v1", 6)
    write_frames(tmp / "videos" / "v2", 5)
    doc = {
        # v2 layout: "English", st_frame 1-based, no end frame (the tube ends at st_frame + len(bbox) - 1)
        "v1.mp4": {
            "English": "The man in black walks to the left and sits down.",
            "st_frame": 2,
            "bbox": [[5, 10, 40, 30]] * 4,
            "img_num": 6,
        },
        "v2.mp4": {
            "English": "The woman turns around and waves.",
            "st_frame": 1,
            "bbox": [[5, 10, 40, 30]] * 5,
            "img_num": 5,
        },
    }
    path = tmp / "test_v1.json"
    path.write_text(json.dumps(doc))
    return path


def write_activitynet(tmp: Path) -> Path:
    f1 = write_frames(tmp / "frames" / "V_aaa", 5)
    f2 = write_frames(tmp / "frames" / "V_bbb", 3)
    v1 = {
        "type": "video",
        "image_root": "frames/V_aaa",
        "annotations": [
            {"event_id": 1, "frames": f1[:3], "gt": "A boy plays on a swing set.", "box": [[5, 10, 40, 30]]},
            {
                "event_id": 2,
                "frames": f1[3:],
                "gt": "The boy jumps off the swing and runs away.",
                "box": [[9, 10, 40, 30]],
            },
        ],
    }
    v2 = {
        "type": "video",
        "image_root": "frames/V_bbb",
        "annotations": [
            {"event_id": 1, "frames": f2, "gt": "A man lays tiles on the floor.", "box": [[5, 10, 40, 30]]}
        ],
    }
    path = tmp / "input_full.jsonl"
    # one pretty-printed object spanning many lines, then a JSON line: upstream's fallback loses the first
    path.write_text(json.dumps(v1, indent=4) + "\n" + json.dumps(v2) + "\n")
    return path


DLC_QA = {
    "7": [
        {
            "type": "positive",
            "question": "What colour is the cup?",
            "choices": [["Red", 1], ["Blue", -1], ["Not mentioned", 0], ["Reddish", 0.5]],
        },
        {
            "type": "positive",
            "question": "Does the cup have a handle?",
            "choices": [["Yes", 1], ["No", -1], ["Not mentioned", 0]],
        },
        {
            "type": "negative",
            "question": "Does the caption mention a lid?",
            "choices": [["No lid mentioned", 1], ["A lid is mentioned", -1], ["Unclear", 0]],
        },
    ],
    "8": [
        {
            "type": "positive",
            "question": "What colour is the dog?",
            "choices": [["Brown", 1], ["White", -1], ["Not mentioned", 0]],
        },
        {
            "type": "negative",
            "question": "Does the caption mention a collar?",
            "choices": [["No", 1], ["Yes", -1], ["Unclear", 0]],
        },
    ],
}


def write_dlc(tmp: Path) -> Path:
    folder = tmp / "DLC-Bench"
    _image(folder / "images" / "sa_1.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "sa_1.jpg", "height": H, "width": W}],
        "annotations": [
            {"id": 7, "image_id": 1, "segmentation": _rle(), "bbox": [20, 10, 40, 30], "category_id": 1},
            {"id": 8, "image_id": 1, "segmentation": _rle((0, 0, 10, 10)), "bbox": [0, 0, 10, 10], "category_id": 2},
        ],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "dog"}],
    }
    (folder / "annotations.json").write_text(json.dumps(coco))
    (folder / "class_names.json").write_text(json.dumps({"7": "cup", "8": "dog"}))
    (folder / "qa.json").write_text(json.dumps(DLC_QA))
    return folder


def _videorefer_ann(frame: int, objects: int = 2) -> list[dict]:
    """Official layout: every object has a mask on frame_idx (``frame``)."""
    other = {"segmentation": _rle((0, 0, 10, 10))}
    return [{str(frame): {"segmentation": _rle()}}, {str(frame): other, "4": other}][:objects]


def write_videorefer(tmp: Path) -> tuple[Path, Path]:
    write_frames(tmp / "videos" / "clip1", 6)
    write_frames(tmp / "videos" / "clip2", 4)
    d = [
        {
            "id": 0,
            "video": "clip1",
            "caption": "A red block slides to the right across a dark floor.",
            "frame_idx": "1",
            "annotation": _videorefer_ann(1),
        },
        {
            "id": 1,
            "video": "clip2",
            "caption": "A red block moves slowly.",
            "frame_idx": "0",
            "annotation": _videorefer_ann(0),
        },
    ]
    q = [
        {
            "id": 0,
            "video": "clip1",
            "Question": "What is <object0><region> doing?",
            "type": "Basic Questions",
            "options": ["(A) sliding right", "(B) jumping", "(C) spinning"],
            "Answer": "(A) sliding right",
            "frame_idx": "1",
            "annotation": _videorefer_ann(1, 1),
        },
        {
            "id": 1,
            "video": "clip2",
            "Question": "What colour is <object0><region>?",
            "type": "Basic Questions",
            "options": ["(A) blue", "(B) red"],
            "Answer": "(B) red",
            "frame_idx": "0",
            "annotation": _videorefer_ann(0, 1),
        },
        {
            "id": 2,
            "video": "clip2",
            "Question": "What happens to <object0><region> after it stops?",
            "type": "Sequential Questions",
            "options": ["(A) it falls", "(B) it stays", "(C) it vanishes", "(D) it grows"],
            "Answer": "(C) it vanishes",
            "frame_idx": "0",
            "annotation": _videorefer_ann(0, 1),
        },
    ]
    pd_, pq = tmp / "VideoRefer-Bench-D.json", tmp / "VideoRefer-Bench-Q.json"
    pd_.write_text(json.dumps(d))
    pq.write_text(json.dumps(q))
    return pd_, pq


def write_ferret(tmp: Path) -> Path:
    """ml-ferret's refer_reason layout: the box (normalised xyxy) inside the question text, context by image."""
    folder = tmp / "refer_reason"
    _image(folder / "images" / "000000001.jpg")
    qs = [
        {
            "question_id": 0,
            "image": "000000001.jpg",
            "category": "refer_reason",
            "text": "What is the purpose of the object [0.250, 0.167, 0.750, 0.667]?",
        },
        {
            "question_id": 1,
            "image": "000000001.jpg",
            "category": "refer_reason",
            "text": "Why is [0.000, 0.000, 0.125, 0.167] placed there?",
        },
    ]
    answers = [
        {"question_id": 0, "text": "It is a cup used for drinking."},
        {"question_id": 1, "text": "It marks the corner of the table."},
    ]
    ctx = [
        {
            "question_id": 0,
            "image": "000000001.jpg",
            "category": "refer_reason",
            "text": "Objects:\nObject 0 : cup at [0.250, 0.167, 0.750, 0.667].",
        }
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("question.jsonl", qs), ("answer.jsonl", answers), ("context.jsonl", ctx)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_every_registered_benchmark_is_covered():
    assert list_benchmarks() == sorted(
        [
            "activitynet_stream",
            "dlc_bench",
            "ferret",
            "gstdc",
            "hc_stvg",
            "lvis",
            "paco",
            "quickstart",
            "ref_l4",
            "refcocog",
            "vg",
            "videorefer_d",
            "videorefer_q",
        ]
    )


@pytest.mark.parametrize("name", ["lvis", "paco"])
def test_osprey_reader(tmp_path, name):
    items = get_benchmark(name).read_items(write_osprey(tmp_path))
    assert [it["id"] for it in items] == ["0/0", "0/1", "1/0"]
    assert [it["category"] for it in items] == ["dog", "baseball_bat", "mug:handle"]
    assert items[1]["segmentation"]["size"] == [H, W] and items[2]["image"] == "000000000285.jpg"
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {
                    "file_name": "x.jpg",
                    "height": 1,
                    "width": 1,
                    "categories": ["a", "b"],
                    "annotations": [{"bbox": [0, 0, 1, 1]}],
                }
            ]
        )
    )
    with pytest.raises(
        ValueError, match=r"bad.json: entry 0: 'categories' and 'annotations' must be lists of equal length"
    ):
        get_benchmark(name).read_items(bad)


@pytest.mark.parametrize("name", ["refcocog", "vg"])
def test_coco_caption_reader(tmp_path, name):
    items = get_benchmark(name).read_items(write_coco_captions(tmp_path))
    assert [(it["id"], it["image"]) for it in items] == [
        (11, "a.jpg"),
        (13, "a.jpg"),
        (12, "b.jpg"),
    ]  # grouped by image
    assert items[2]["references"] == ["two cats sleeping on a sofa"]


@pytest.mark.parametrize("kind", ["parquet", "json"])
def test_ref_l4_reader(tmp_path, kind):
    if kind == "parquet":
        pytest.importorskip("pyarrow", reason="Ref-L4's parquet files need pyarrow (the eval extra)")
    items = get_benchmark("ref_l4").read_items(write_ref_l4(tmp_path, kind))
    assert [it["id"] for it in items] == [1000, 1001]
    assert items[0]["bbox"] == [20.0, 10.0, 40.0, 30.0] and items[0]["root"] == str(tmp_path / "images")
    assert items[1]["references"] == ["a small dark square in the corner"]


def test_hc_stvg_reader(tmp_path):
    items = get_benchmark("hc_stvg").read_items(write_hc_stvg(tmp_path))
    assert [(it["id"], it["start"], it["end"], it["box"]) for it in items] == [
        ("v1.mp4", 1, 4, [5.0, 10.0, 45.0, 40.0]),
        ("v2.mp4", 0, 4, [5.0, 10.0, 45.0, 40.0]),
    ]


def test_activitynet_reader_reads_multiline_objects(tmp_path):
    path = write_activitynet(tmp_path)
    assert len(read_json_stream(path)) == 2
    items = get_benchmark("activitynet_stream").read_items(path)
    assert [it["id"] for it in items] == ["0:V_aaa", "1:V_bbb"]
    assert [[e["event_id"] for e in it["events"]] for it in items] == [[1, 2], [1]]
    assert items[0]["events"][1]["box"] == [9.0, 10.0, 49.0, 40.0]
    (tmp_path / "broken.jsonl").write_text('{"type": "video",\n "annotations": [}\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: invalid JSON"):
        read_json_stream(tmp_path / "broken.jsonl")


def test_dlc_bench_reader(tmp_path):
    items = get_benchmark("dlc_bench").read_items(write_dlc(tmp_path))
    assert [(it["id"], it["class_name"], len(it["questions"])) for it in items] == [("7", "cup", 3), ("8", "dog", 2)]


def test_videorefer_readers(tmp_path):
    pd_, pq = write_videorefer(tmp_path)
    d = get_benchmark("videorefer_d").read_items(pd_)
    assert [(it["id"], it["video"], it["frame"]) for it in d] == [(0, "clip1", 1), (1, "clip2", 0)]
    q = get_benchmark("videorefer_q").read_items(pq)
    # as the official inference: question, space, options joined by spaces, ". Answer with ..."
    assert (
        q[0]["text"] == "What is the subject doing? (A) sliding right (B) jumping (C) spinning. "
        "Answer with the option's letter from the given choices directly."
    )
    assert [it["answer"] for it in q] == ["(A) sliding right", "(B) red", "(C) it vanishes"]


def test_ferret_reader(tmp_path):
    items = get_benchmark("ferret").read_items(write_ferret(tmp_path))
    assert [it["text"] for it in items] == [
        "What is the purpose of the object the region?",
        "Why is the region placed there?",
    ]
    assert items[0]["box_norm"] == [0.25, 0.167, 0.75, 0.667] and items[0]["question"].endswith(
        "[0.250, 0.167, 0.750, 0.667]?"
    )
    assert items[0]["reference"] == "It is a cup used for drinking." and items[1]["context"].startswith("Objects:")


def test_quickstart_reader(tmp_path):
    from pam.data.synthetic import SyntheticConfig, generate_quickstart

    generate_quickstart(
        str(tmp_path),
        SyntheticConfig(num_train=1, num_val=1, num_test=2, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    items = get_benchmark("quickstart").read_items(tmp_path)
    assert [it["id"] for it in items] == [
        "synthetic/test/000000/r0/category/en",
        "synthetic/test/000000/r0/short_caption/en",
        "synthetic/test/000001/r0/category/en",
        "synthetic/test/000001/r0/short_caption/en",
    ]
