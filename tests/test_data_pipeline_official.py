"""data_pipeline converters on each source's release layout (folder names, file names, field types as
published; SA-V from the real example records sam2 ships). Expected masks, boxes and frames are
computed here from the official annotation with pycocotools (COCO API, frPyObjects, decode), never
with the converter's code; the converted output loads in the training dataset with no root."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data_pipeline.cli import main
from data_pipeline.records import iter_records
from pam.data.datasets import load_records, load_region_dataset
from pam.data.video import write_video_mp4
from pam.processing.prompts import IMAGE_PLACEHOLDER

H, W = 24, 32
SAV_EXAMPLE = Path(__file__).parent / "data" / "sav_example"


def jpg(path: Path, h=H, w=W, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)).save(path, quality=95)
    return path


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(json.dumps(data))
    return path


def rle_of(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode()}


def rect(y0, y1, x0, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def run(capsys, source, annotations, out, *extra) -> dict:
    code = main(["convert", source, "--annotations", str(annotations), "--out", str(out), *map(str, extra)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out[captured.out.index("{\n") :])  # after anything pycocotools printed


def test_coco_relative_images_load_without_root(tmp_path, capsys, monkeypatch):
    root = tmp_path / "coco"
    jpg(root / "val2017" / "000000000139.jpg")
    poly = [[2.0, 2.0, 20.0, 2.0, 20.0, 15.0, 2.0, 15.0]]
    uncompressed = {
        "size": [H, W],
        "counts": [H * 22 + 3, 6],
    }  # a crowd RLE as COCO writes it: column-major run lengths
    uncompressed["counts"].append(H * W - sum(uncompressed["counts"]))
    ann_file = dump(
        root / "annotations" / "instances_val2017.json",
        {
            "info": {},
            "licenses": [],
            "images": [
                {
                    "id": 139,
                    "file_name": "000000000139.jpg",
                    "height": H,
                    "width": W,
                    "license": 2,
                    "coco_url": "x",
                    "date_captured": "",
                    "flickr_url": "",
                }
            ],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 139,
                    "category_id": 64,
                    "segmentation": poly,
                    "area": 234.0,
                    "bbox": [2.0, 2.0, 18.0, 13.0],
                    "iscrowd": 0,
                },
                {
                    "id": 2,
                    "image_id": 139,
                    "category_id": 1,
                    "segmentation": uncompressed,
                    "area": 6.0,
                    "bbox": [22.0, 3.0, 1.0, 6.0],
                    "iscrowd": 1,
                },
            ],
            "categories": [
                {"id": 1, "name": "person", "supercategory": "person"},
                {"id": 64, "name": "potted plant", "supercategory": "furniture"},
            ],
        },
    )
    monkeypatch.chdir(root)
    out = tmp_path / "converted" / "coco.jsonl"
    counts = run(capsys, "coco", "annotations/instances_val2017.json", out, "--images", "val2017", "--include-crowd")
    assert counts["records"] == 1 and counts["regions"] == 2
    coco = COCO(str(ann_file))
    monkeypatch.chdir(tmp_path / "converted")  # the loader must not depend on the working directory
    records = load_records(str(out))
    assert records[0].image == str(root / "val2017" / "000000000139.jpg")
    for region, ann in zip(records[0].regions, coco.loadAnns([1, 2])):
        assert np.array_equal(region.masks[0].decode(H, W), coco.annToMask(ann).astype(bool))
        assert region.boxes[0] == ann["bbox"]
    sample = load_region_dataset(str(out), tasks=["category"])[0]
    assert sample["meta"]["answer"] == "potted plant" and sample["pixels"].shape == (H, W, 3)
    manifest = json.loads((tmp_path / "converted" / "coco.manifest.json").read_text())
    assert (
        manifest["steps"]["convert"]["kept"] == 1
        and manifest["problems"] == []
        and manifest["inputs"][0]["path"] == str(ann_file)
    )
    # --relative-paths writes them relative to the output's folder, which the loader resolves the same way;
    # media outside that folder cannot be (the loader refuses paths that leave its root)
    run(capsys, "coco", str(ann_file), root / "coco.jsonl", "--images", str(root / "val2017"), "--relative-paths")
    line = json.loads((root / "coco.jsonl").read_text().splitlines()[0])
    assert line["image"] == "val2017/000000000139.jpg"
    assert load_records(str(root / "coco.jsonl"))[0].image == records[0].image
    assert (
        main(
            [
                "convert",
                "coco",
                "--annotations",
                str(ann_file),
                "--out",
                str(tmp_path / "x" / "c.jsonl"),
                "--images",
                "val2017",
                "--relative-paths",
            ]
        )
        == 2
    )
    assert "outside the output's folder" in capsys.readouterr().err


def test_lvis_v05_image_from_coco_url(tmp_path, capsys):
    jpg(tmp_path / "coco" / "val2017" / "000000000139.jpg")
    ann = dump(
        tmp_path / "lvis" / "lvis_v0.5_val.json",
        {
            "images": [
                {
                    "id": 139,
                    "file_name": "COCO_val2014_000000000139.jpg",
                    "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg",
                    "height": H,
                    "width": W,
                    "license": 1,
                    "flickr_url": "",
                    "neg_category_ids": [],
                    "not_exhaustive_category_ids": [],
                }
            ],
            "annotations": [
                {
                    "id": 7,
                    "image_id": 139,
                    "category_id": 3,
                    "segmentation": [[1, 1, 12, 1, 12, 9, 1, 9]],
                    "area": 88.0,
                    "bbox": [1, 1, 11, 8],
                }
            ],
            "categories": [
                {
                    "id": 3,
                    "name": "aerosol_can",
                    "synonyms": ["aerosol_can", "spray_can"],
                    "def": "a dispenser that holds a substance under pressure",
                    "synset": "aerosol.n.02",
                    "frequency": "r",
                    "image_count": 1,
                    "instance_count": 1,
                }
            ],
        },
    )
    out = tmp_path / "lvis.jsonl"
    run(capsys, "lvis", ann, out, "--images", tmp_path / "coco")
    rec = load_records(str(out))[0]
    assert rec.image == str(tmp_path / "coco" / "val2017" / "000000000139.jpg")
    region = rec.regions[0]
    assert region.category == {"en": "aerosol can"} and region.definition["en"].startswith("a dispenser")
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[1, 1, 12, 1, 12, 9, 1, 9]], H, W))).astype(
        bool
    )
    assert np.array_equal(region.masks[0].decode(H, W), expected)
    assert "dispenser" in load_region_dataset(str(out), tasks=["explain"])[0]["meta"]["answer"]


def test_paco_empty_part_segmentation_is_skipped_and_attributes_kept(tmp_path, capsys):
    jpg(tmp_path / "coco" / "val2017" / "000000000139.jpg")
    poly = [[3, 3, 20, 3, 20, 18, 3, 18]]
    ann = dump(
        tmp_path / "paco" / "annotations" / "paco_lvis_v1_val.json",
        {
            "images": [{"id": 139, "file_name": "val2017/000000000139.jpg", "height": H, "width": W}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 139,
                    "category_id": 10,
                    "segmentation": poly,
                    "bbox": [3, 3, 17, 15],
                    "area": 255.0,
                    "attribute_ids": [0, 31],
                    "unknown_color": 0,
                    "unknown_pattern_marking": 1,
                    "unknown_material": 0,
                    "unknown_transparency": 1,
                },
                {
                    "id": 2,
                    "image_id": 139,
                    "category_id": 11,
                    "segmentation": [],
                    "bbox": [4, 4, 2, 2],
                    "area": 0.0,
                    "attribute_ids": [],
                },
            ],
            "categories": [
                {"id": 10, "name": "mug", "supercategory": "OBJECT", "def": "with handle"},
                {"id": 11, "name": "mug:handle", "supercategory": "PART"},
            ],
            "attributes": [{"id": 0, "name": "black"}, {"id": 31, "name": "ceramic"}],
            "attr_type_to_attr_idxs": {"color": [0], "material": [31]},
        },
    )
    out = tmp_path / "paco.jsonl"
    counts = run(capsys, "paco", ann, out, "--images", tmp_path / "coco")
    assert counts["regions"] == 1 and counts["skipped"] == {"empty_segmentation": 1}
    region = load_records(str(out))[0].regions[0]
    assert region.extra["attribute_ids"] == [0, 31] and region.extra["attributes"] == ["black", "ceramic"]
    assert np.array_equal(
        region.masks[0].decode(H, W), COCO(str(ann)).annToMask({"segmentation": poly, "image_id": 139}).astype(bool)
    )


def test_objects365_mmdet_path_and_v3det_texts(tmp_path, capsys):
    jpg(tmp_path / "objects365" / "val" / "patch8" / "objects365_v1_00420917.jpg")
    ann = dump(
        tmp_path / "objects365" / "zhiyuan_objv2_val.json",
        {
            "images": [
                {"id": 420917, "file_name": "images/v1/patch8/objects365_v1_00420917.jpg", "height": H, "width": W},
                {"id": 908726, "file_name": "images/v2/patch16/objects365_v2_00908726.jpg", "height": H, "width": W},
            ],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 420917,
                    "category_id": 2,
                    "bbox": [2.5, 3.0, 10.0, 8.0],
                    "area": 80.0,
                    "iscrowd": 0,
                    "isfake": 0,
                    "isreflected": 0,
                },
                {"id": 2, "image_id": 908726, "category_id": 2, "bbox": [1, 1, 4, 4], "area": 16.0, "iscrowd": 0},
            ],
            "categories": [{"id": 2, "name": "Sneakers"}],
        },
    )
    out = tmp_path / "o365.jsonl"
    counts = run(capsys, "objects365", ann, out, "--images", tmp_path / "objects365" / "val")
    assert counts["records"] == 1 and counts["skipped"] == {"image_ignored": 1}
    sample = load_region_dataset(str(out), tasks=["category"])[0]
    assert sample["meta"]["answer"] == "Sneakers" and sample["prompt"]["box"].tolist() == [2.5, 3.0, 12.5, 11.0]

    jpg(tmp_path / "V3Det" / "images" / "a00000066" / "0_2530_11591900204_c1c10c1531_c.jpg")
    ann = dump(
        tmp_path / "V3Det" / "annotations" / "v3det_2023_v1_val.json",
        {
            "images": [
                {"id": 5, "file_name": "images/a00000066/0_2530_11591900204_c1c10c1531_c.jpg", "height": H, "width": W}
            ],
            "annotations": [
                {"id": 9, "image_id": 5, "category_id": 1, "bbox": [1, 2, 10, 12], "area": 120.0, "iscrowd": 0}
            ],
            "categories": [
                {
                    "id": 1,
                    "name": "lanyard",
                    "name_zh": "挂绳",
                    "cat_info": "a cord worn around the neck",
                    "cat_info_gpt": "A lanyard is a strap.",
                    "novel": False,
                }
            ],
        },
    )
    out = tmp_path / "v3det.jsonl"
    run(capsys, "v3det", ann, out, "--images", tmp_path / "V3Det")
    region = load_records(str(out))[0].regions[0]
    assert region.category == {"en": "lanyard", "zh": "挂绳"} and region.definition == {
        "en": "a cord worn around the neck"
    }
    assert region.extra["cat_info_gpt"] == "A lanyard is a strap." and region.boxes[0] == [1.0, 2.0, 10.0, 12.0]
    assert load_region_dataset(str(out), tasks=["category"], languages=["zh"])[0]["meta"]["answer"] == "挂绳"


def _refer_split(refs, split):
    """refer.py getRefIds(split=...) rule, written out here."""
    if split in ("testA", "testB", "testC"):
        return [r for r in refs if split[-1] in r["split"]]
    if split == "test":
        return [r for r in refs if "test" in r["split"]]
    return [r for r in refs if r["split"] == split]


def test_refcoco_unc_test_split_is_testa_plus_testb(tmp_path, capsys):
    jpg(tmp_path / "train2014" / "COCO_train2014_000000581857.jpg")
    masks = [rect(2, 10, 2, 10), rect(12, 20, 4, 14), rect(3, 9, 18, 30)]
    inst = dump(
        tmp_path / "refcoco" / "instances.json",
        {
            "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "height": H, "width": W}],
            "annotations": [
                {
                    "id": 100 + k,
                    "image_id": 581857,
                    "category_id": 1,
                    "segmentation": [
                        [float(c) for c in p]
                        for p in [
                            [
                                box_of(m)[0],
                                box_of(m)[1],
                                box_of(m)[0] + box_of(m)[2],
                                box_of(m)[1],
                                box_of(m)[0] + box_of(m)[2],
                                box_of(m)[1] + box_of(m)[3],
                                box_of(m)[0],
                                box_of(m)[1] + box_of(m)[3],
                            ]
                        ]
                    ],
                    "area": float(m.sum()),
                    "bbox": box_of(m),
                    "iscrowd": 0,
                }
                for k, m in enumerate(masks)
            ],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        },
    )
    refs = [
        {
            "ref_id": k,
            "ann_id": 100 + k,
            "image_id": 581857,
            "split": split,
            "category_id": 1,
            "sent_ids": [k],
            "file_name": f"COCO_train2014_000000581857_{100 + k}.jpg",
            "sentences": [{"tokens": ["x"], "raw": f"Person {k}", "sent_id": k, "sent": f"person {k}"}],
        }
        for k, split in enumerate(["testA", "testB", "train"])
    ]
    refs_file = dump(tmp_path / "refcoco" / "refs(unc).p", pickle.dumps(refs, protocol=2))
    out = tmp_path / "refcoco.jsonl"
    counts = run(capsys, "refcoco", refs_file, out, "--split", "test", "--images", tmp_path / "train2014")
    expected = _refer_split(refs, "test")
    assert counts["regions"] == len(expected) == 2 and counts["skipped"] == {"other_split": 1}
    coco = COCO(str(inst))
    regions = load_records(str(out))[0].regions
    for region, ref in zip(regions, expected):
        assert region.extra["ref_id"] == ref["ref_id"] and region.short_caption == {"en": ref["sentences"][0]["raw"]}
        assert np.array_equal(region.masks[0].decode(H, W), coco.annToMask(coco.anns[ref["ann_id"]]).astype(bool))
    assert load_region_dataset(str(out), tasks=["short_caption"])[0]["pixels"].shape == (H, W, 3)


def test_osprey_multi_region_conversation_split_per_region(tmp_path, capsys):
    jpg(tmp_path / "coco" / "train2014" / "000000000042.jpg")
    m1, m2 = rect(0, 6, 0, 8), rect(10, 20, 12, 28)
    data = [
        {
            "id": 42,
            "file_name": "COCO_train2014_000000000042.jpg",
            "height": H,
            "width": W,
            "annotation": [
                {"bbox": box_of(m1), "segmentation": rle_of(m1), "category_id": 1},
                {"bbox": box_of(m2), "segmentation": rle_of(m2), "category_id": 3},
            ],
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is <region1> holding?"},
                {"from": "gpt", "value": "A cup."},
                {"from": "human", "value": "And what colour is it?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "What is <region2>?"},
                {"from": "gpt", "value": "A table."},
            ],
        },
        {
            "id": 43,
            "file_name": "COCO_train2014_000000000042.jpg",
            "height": H,
            "width": W,
            "annotation": [{"segmentation": rle_of(m1)}, {"segmentation": rle_of(m2)}],
            "conversations": [
                {"from": "human", "value": "Is <region1> on <region2>?"},
                {"from": "gpt", "value": "No."},
            ],
        },
    ]
    ann = dump(tmp_path / "Osprey-724K" / "osprey_conversation.json", data)
    out = tmp_path / "osprey.jsonl"
    counts = run(capsys, "osprey", ann, out, "--images", tmp_path / "coco" / "train2014")
    assert counts["records"] == 1 and counts["regions"] == 2 and counts["skipped"] == {"multi_region_turn": 1}
    r1, r2 = load_records(str(out))[0].regions
    assert [t["content"] for t in r1.conversations] == [
        f"{IMAGE_PLACEHOLDER}\nWhat is the region holding?",
        "A cup.",
        "And what colour is it?",
        "Red.",
    ]
    assert [t["content"] for t in r2.conversations] == [f"{IMAGE_PLACEHOLDER}\nWhat is the region?", "A table."]
    assert np.array_equal(
        r2.masks[0].decode(), mask_utils.decode(data[0]["annotation"][1]["segmentation"]).astype(bool)
    )
    ds = load_region_dataset(str(out), tasks=["conversation"])
    assert len(ds) == 2 and ds[1]["turns"][-1]["content"] == "A table."


def test_sav_release_folder_real_example_records(tmp_path, capsys):
    out = tmp_path / "sav.jsonl"
    counts = run(capsys, "sav", SAV_EXAMPLE, out, "--images", tmp_path / "sav_train" / "sav_000")
    manual = json.loads((SAV_EXAMPLE / "sav_000001_manual.json").read_text())
    auto = json.loads((SAV_EXAMPLE / "sav_000001_auto.json").read_text())
    expected = []  # (type, masklet id, {video frame: mask}) of every masklet visible on some annotated frame
    for data in (manual, auto):
        for obj, mid in enumerate(data["masklet_id"]):
            frames = {4 * i: mask_utils.decode(f[obj]).astype(bool) for i, f in enumerate(data["masklet"])}
            frames = {k: v for k, v in frames.items() if v.any()}
            if frames:
                expected.append((data["masklet_type"][obj], mid, frames))
    assert (
        counts["records"] == 1 and counts["regions"] == len(expected) == 4 and counts["skipped"] == {"empty_masklet": 1}
    )
    rec = load_records(str(out))[0]
    assert rec.id == "sav/sav_000001" and (rec.height, rec.width) == (848, 480)  # the release writes 848.0 / 480.0
    assert rec.video == str(tmp_path / "sav_train" / "sav_000" / "sav_000001.mp4")
    for region, (kind, mid, frames) in zip(rec.regions, expected):
        assert region.extra == {"masklet_id": mid, "masklet_type": kind} and sorted(region.masks) == sorted(frames)
        for f, mask in frames.items():
            assert np.array_equal(region.masks[f].decode(848, 480), mask) and region.boxes[f] == box_of(mask)


def test_sav_none_entry_is_absent_and_bad_counts_are_refused(tmp_path, capsys):
    data = json.loads((SAV_EXAMPLE / "sav_000001_manual.json").read_text())
    data["masklet"][1][0] = None  # sam2's JSONSegmentLoader skips None entries
    ann = dump(tmp_path / "sav_000001_manual.json", data)
    run(capsys, "sav", ann, tmp_path / "a.jsonl")
    assert sorted(load_records(str(tmp_path / "a.jsonl"))[0].regions[0].masks) == [0, 8]
    for bad, field in ((12345, "masklet[1][0].counts"), ("#garbage counts#", "masklet[1][0].counts")):
        data["masklet"][1][0] = {"size": [848, 480], "counts": bad}
        dump(ann, data)
        assert main(["convert", "sav", "--annotations", str(ann), "--out", str(tmp_path / "b.jsonl")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(ann) in err and "sav_000001" in err and f"`{field}`" in err
        assert not (tmp_path / "b.jsonl").exists()


def test_ytvis_polygons(tmp_path, capsys):
    names = [f"0043f083b5/{5 * t:05d}.jpg" for t in range(3)]
    for t, name in enumerate(names):
        jpg(tmp_path / "train" / "JPEGImages" / name, seed=t)
    polys = [[[2, 2, 14, 2, 14, 12, 2, 12]], None, [[6, 4, 20, 4, 20, 16, 6, 16]]]
    ann = dump(
        tmp_path / "train" / "instances.json",
        {
            "info": {},
            "licenses": [],
            "categories": [{"id": 26, "name": "person", "supercategory": "object"}],
            "videos": [
                {
                    "id": 1,
                    "width": W,
                    "height": H,
                    "length": 3,
                    "file_names": names,
                    "license": 1,
                    "date_captured": "",
                    "coco_url": "",
                    "flickr_url": "",
                }
            ],
            "annotations": [
                {
                    "id": 1,
                    "video_id": 1,
                    "category_id": 26,
                    "iscrowd": 0,
                    "height": H,
                    "width": W,
                    "length": 1,
                    "segmentations": polys,
                    "bboxes": [[2, 2, 12, 10], None, [6, 4, 14, 12]],
                    "areas": [120, None, 168],
                }
            ],
        },
    )
    out = tmp_path / "ytvis.jsonl"
    run(capsys, "ytvis", ann, out, "--images", tmp_path / "train" / "JPEGImages")
    region = load_records(str(out))[0].regions[0]
    assert sorted(region.masks) == [0, 2]
    for f in (0, 2):
        expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys[f], H, W))).astype(bool)
        assert np.array_equal(region.masks[f].decode(), expected)
    sample = load_region_dataset(str(out), tasks=["category"], track_frames=2)[0]
    assert sample["pixels"].shape == (2, H, W, 3) and sample["meta"]["answer"] == "person"


def test_videorefer_frame_folder_null_polygon_and_multi_object(tmp_path, capsys):
    frames = [f"{t:05d}.jpg" for t in (0, 3, 6, 9, 12)]
    for t, name in enumerate(frames):
        jpg(tmp_path / "videos" / "clip_a" / name, seed=t)
    write_video_mp4(str(tmp_path / "videos" / "b.mp4"), np.zeros((4, H, W, 3), np.uint8) + 128)
    m0, m2 = rect(2, 10, 2, 12), rect(5, 15, 8, 20)
    poly = [[10, 10, 24, 10, 24, 20, 10, 20]]
    data = [
        {
            "id": 0,
            "video": "clip_a",
            "conversations": [
                {"from": "human", "value": "<video>\nWhat is <region> doing?"},
                {"from": "gpt", "value": "Rolling."},
            ],
            "annotation": [
                {
                    "0": {"segmentation": rle_of(m0)},
                    "1": {"segmentation": None},
                    "2": {"segmentation": rle_of(m2)},
                    "4": {"segmentation": poly},
                }
            ],
        },
        {
            "id": 1,
            "video": "b.mp4",
            "height": H,
            "width": W,
            "conversations": [
                {"from": "human", "value": "<video>\nWhat is <region>?"},
                {"from": "gpt", "value": "A ball."},
                {"from": "human", "value": "And <region>?"},
                {"from": "gpt", "value": "A cup."},
            ],
            "annotation": [{"0": {"segmentation": rle_of(m0)}}, {"3": {"segmentation": rle_of(m2)}}],
        },
        {
            "id": 2,
            "video": "b.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nIs <region> left of <region>?"},
                {"from": "gpt", "value": "Yes."},
            ],
            "annotation": [{"0": {"segmentation": rle_of(m0)}}, {"0": {"segmentation": rle_of(m2)}}],
        },
    ]
    ann = dump(tmp_path / "VideoRefer-700K" / "videorefer-qa.json", data)
    out = tmp_path / "videorefer.jsonl"
    counts = run(capsys, "videorefer", ann, out, "--images", tmp_path / "videos")
    assert counts["records"] == 2 and counts["regions"] == 3 and counts["skipped"] == {"multi_region_turn": 1}
    a, b = load_records(str(out))
    assert a.frames == [str(tmp_path / "videos" / "clip_a" / f) for f in frames]  # sorted files of the folder, resolved
    region = a.regions[0]
    assert sorted(region.masks) == [0, 2, 4]  # frame 1 is null: no mask there
    assert np.array_equal(
        region.masks[4].decode(), mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, H, W))).astype(bool)
    )
    assert [r.conversations[-1]["content"] for r in b.regions] == ["A ball.", "A cup."] and sorted(
        b.regions[1].masks
    ) == [3]
    assert b.regions[1].conversations[0]["content"] == f"{IMAGE_PLACEHOLDER}\nAnd the region?"
    sample = load_region_dataset(str(out), tasks=["conversation"], track_frames=2)[0]
    assert sample["pixels"].shape == (2, H, W, 3) and sample["turns"][-1]["content"] == "Rolling."


def _coco_like(tmp_path, anns, images=None, categories=None, **top):
    return dump(
        tmp_path / "ann.json",
        {
            "images": images
            or [{"id": 1, "file_name": "1.jpg", "coco_url": "http://x/val2017/1.jpg", "height": H, "width": W}],
            "annotations": anns,
            "categories": categories or [{"id": 1, "name": "cup"}],
            **top,
        },
    )


def _malformed_cases():
    """(source, builder(tmp_path) -> (annotations path, extra args), substrings the one line must hold)."""
    ok = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "segmentation": [[1, 1, 5, 1, 5, 5]]}
    rle_bad = {"size": [48], "counts": "abc"}

    def refcoco(tmp_path):
        inst = dump(
            tmp_path / "instances.json",
            {"images": [], "annotations": [{"id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]}], "categories": []},
        )
        return dump(tmp_path / "refs(unc).p", pickle.dumps([], protocol=2)), ["--instances", inst]

    def sav(tmp_path):
        data = json.loads((SAV_EXAMPLE / "sav_000001_manual.json").read_text())
        data["masklet"][2][1] = {"size": [848, 480], "counts": 7}
        return dump(tmp_path / "sav_000001_manual.json", data), []

    return [
        (
            "coco",
            lambda p: (_coco_like(p, [{k: v for k, v in ok.items() if k != "image_id"}]), []),
            ["annotations[0]", "(id 1)", "`image_id`"],
        ),
        (
            "lvis",
            lambda p: (_coco_like(p, [ok], images=[{"id": 1, "height": H, "width": W}]), []),
            ["images[0]", "(id 1)", "`coco_url`"],
        ),
        (
            "paco",
            lambda p: (_coco_like(p, [{**ok, "attribute_ids": ["red"]}], attributes=[]), []),
            ["annotations[0]", "`attribute_ids`"],
        ),
        (
            "objects365",
            lambda p: (_coco_like(p, [{**ok, "bbox": ["3.5", 1, 4, 4]}]), []),
            ["annotations[0]", "(id 1)", "`bbox`"],
        ),
        ("v3det", lambda p: (_coco_like(p, [ok], categories=[{"id": 1, "name": 5}]), []), ["categories[0]", "`name`"]),
        ("refcoco", refcoco, ["instances.json", "annotations[0]", "(id 5)", "`image_id`"]),
        (
            "vg",
            lambda p: (
                dump(
                    p / "region_descriptions.json",
                    [
                        {
                            "id": 1,
                            "regions": [{"region_id": 3, "phrase": "a cup", "x": "4", "y": 1, "width": 2, "height": 2}],
                        }
                    ],
                ),
                [],
            ),
            ["[0].regions[0]", "`x`"],
        ),
        (
            "osprey",
            lambda p: (
                dump(
                    p / "osprey_detail_description.json",
                    [
                        {
                            "id": 1,
                            "file_name": "1.jpg",
                            "height": H,
                            "width": W,
                            "annotation": [{"bbox": ["a", 1, 2, 2]}],
                            "description": ["<region1>: A cup."],
                        }
                    ],
                ),
                [],
            ),
            ["[0]", "annotation[0]", "`bbox`"],
        ),
        ("sav", sav, ["sav_000001_manual.json", "sav_000001", "`masklet[2][1].counts`"]),
        (
            "ytvis",
            lambda p: (
                dump(
                    p / "instances.json",
                    {
                        "videos": [],
                        "categories": [{"id": 1, "name": "cat"}],
                        "annotations": [{"id": 4, "category_id": 1, "segmentations": [None]}],
                    },
                ),
                [],
            ),
            ["annotations[0]", "(id 4)", "`video_id`"],
        ),
        (
            "ytvis",
            lambda p: (
                dump(
                    p / "instances.json", {"videos": [], "categories": [{"id": 1, "name": ["cat"]}], "annotations": []}
                ),
                [],
            ),
            ["categories[0]", "`name`"],
        ),
        (
            "videorefer",
            lambda p: (
                dump(
                    p / "vr.json",
                    [
                        {
                            "id": 9,
                            "video": "a.mp4",
                            "conversations": [{"from": "human", "value": "<region>?"}, {"from": "gpt", "value": "x"}],
                            "annotation": [{"0": {"segmentation": rle_bad}}],
                        }
                    ],
                ),
                [],
            ),
            ["[0]", "(id 9)", "`annotation[0][0].segmentation.size`"],
        ),
        (
            "pam-release",
            lambda p: (dump(p / "release.jsonl", b'{"type": "image", "image": "a.jpg"\n'), []),
            ["release.jsonl:1", "invalid JSON"],
        ),
    ]


@pytest.mark.parametrize(
    "source,build,parts", _malformed_cases(), ids=[f"{c[0]}-{k}" for k, c in enumerate(_malformed_cases())]
)
def test_malformed_input_is_one_line_and_nothing_written(tmp_path, capsys, source, build, parts):
    ann, extra = build(tmp_path)
    out = tmp_path / "out" / f"{source}.jsonl"
    assert main(["convert", source, "--annotations", str(ann), "--out", str(out), *map(str, extra)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in parts + ([] if source == "refcoco" else [ann.name]):  # refcoco's fault is in its instances.json
        assert part in err, (part, err)
    assert not out.exists() and not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


def test_skip_bad_limit_and_manifest(tmp_path, capsys):
    jpg(tmp_path / "1.jpg")
    good = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}
    ann = _coco_like(
        tmp_path,
        [
            good,
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, "x", 4, 4]},
            {"id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
    )
    out = tmp_path / "coco.jsonl"
    assert main(["convert", "coco", "--annotations", str(ann), "--out", str(out), "--skip-bad", "1"]) == 2
    err = capsys.readouterr().err
    assert "annotations[2] (id 3)" in err and "more than --skip-bad 1" in err and not out.exists()
    counts = run(capsys, "coco", ann, out, "--skip-bad", "2", "--images", tmp_path)
    assert counts["records"] == 1 and counts["regions"] == 1 and counts["skipped"] == {"malformed": 2}
    manifest = json.loads((tmp_path / "coco.manifest.json").read_text())
    assert manifest["steps"]["convert"]["dropped"] == {"malformed": 2} and len(manifest["problems"]) == 2
    assert "annotations[1] (id 2)" in manifest["problems"][0] and "`bbox`" in manifest["problems"][0]
    assert [r.id for r in iter_records(out)] == ["coco/1"]
