"""data_pipeline converters: each reads a small hand-written file in its source's official layout
(real field names), writes the region schema through the CLI, and the output loads in the
training dataset (pam.data.datasets)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from data_pipeline.cli import main
from data_pipeline.records import ConvertError, iter_records
from pam.data.datasets import RegionDataset, RegionDatasetConfig, load_region_dataset
from pam.data.video import write_video_mp4
from pam.processing.prompts import IMAGE_PLACEHOLDER

H, W = 20, 30


def png(path, h=H, w=W, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)).save(path)
    return path


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": r["counts"].decode()}


def box_mask(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def run(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def convert(tmp_path, capsys, source, data, *extra, name="ann.json", images=None):
    ann = tmp_path / name
    if isinstance(data, bytes):
        ann.write_bytes(data)
    else:
        ann.write_text(json.dumps(data))
    out = tmp_path / f"{source}.jsonl"
    args = ["convert", source, "--annotations", str(ann), "--out", str(out), *extra]
    if images:
        args += ["--images", str(images)]
    counts = run(capsys, *args)
    return counts, list(iter_records(out)), out


def coco_file(categories, annotations, images=None):
    return {
        "images": images or [{"id": 139, "file_name": "000000000139.jpg", "height": H, "width": W}],
        "annotations": annotations,
        "categories": categories,
    }


def test_coco_polygons_rle_crowd_and_dataset(tmp_path, capsys):
    imgs = tmp_path / "train2017"
    png(imgs / "000000000139.jpg")
    m = box_mask(2, 9, 3, 12)
    poly = [[1.0, 1.0, 10.0, 1.0, 10.0, 10.0, 1.0, 10.0], [0.0, 0.0, 1.0, 1.0]]  # the second is degenerate
    anns = [
        {
            "id": 1,
            "image_id": 139,
            "category_id": 64,
            "segmentation": poly,
            "area": 81.0,
            "bbox": [1, 1, 9, 9],
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 139,
            "category_id": 1,
            "segmentation": rle(m),
            "area": 63.0,
            "bbox": [3, 2, 9, 7],
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 139,
            "category_id": 1,
            "segmentation": rle(m),
            "area": 63.0,
            "bbox": [3, 2, 9, 7],
            "iscrowd": 1,
        },
    ]
    cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 64, "name": "potted_plant", "supercategory": "furniture"},
    ]
    images = [
        {"id": 139, "file_name": "000000000139.jpg", "height": H, "width": W},
        {"id": 5, "file_name": "5.jpg", "height": H, "width": W},
    ]
    counts, records, out = convert(tmp_path, capsys, "coco", coco_file(cats, anns, images), images=imgs)
    assert (
        counts["records"] == 1
        and counts["regions"] == 2
        and counts["skipped"] == {"crowd": 1, "image_without_regions": 1}
    )
    rec = records[0]
    assert rec.id == "coco/139" and rec.image == str(imgs / "000000000139.jpg") and (rec.height, rec.width) == (H, W)
    assert [r.category for r in rec.regions] == [{"en": "potted plant"}, {"en": "person"}]
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly[0]], H, W))).astype(bool)
    assert np.array_equal(rec.regions[0].masks[0].decode(H, W), ref)
    assert np.array_equal(rec.regions[1].masks[0].decode(H, W), m)
    assert rec.regions[1].extra == {"annotation_id": 2, "category_id": 1, "raw_category": "person"}
    ds = load_region_dataset(str(out), tasks=["category"])
    sample = ds[1]
    assert (
        sample["pixels"].shape == (H, W, 3)
        and sample["meta"]["answer"] == "person"
        and np.array_equal(sample["gt_mask"], m)
    )


def test_lvis_definition_synonyms_and_coco_url(tmp_path, capsys):
    png(tmp_path / "val2017" / "000000000009.jpg")
    cats = [
        {
            "id": 5,
            "name": "bow_(weapon)",
            "def": "a weapon for shooting arrows",
            "synonyms": ["bow_(weapon)", "longbow"],
            "frequency": "r",
            "image_count": 3,
            "instance_count": 4,
            "synset": "bow.n.04",
        }
    ]
    images = [
        {
            "id": 9,
            "coco_url": "http://images.cocodataset.org/val2017/000000000009.jpg",
            "height": H,
            "width": W,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [],
        }
    ]
    anns = [
        {
            "id": 1,
            "image_id": 9,
            "category_id": 5,
            "segmentation": [[1, 1, 9, 1, 9, 9]],
            "area": 32.0,
            "bbox": [1, 1, 8, 8],
        }
    ]
    counts, records, out = convert(tmp_path, capsys, "lvis", coco_file(cats, anns, images), images=tmp_path)
    region = records[0].regions[0]
    assert records[0].id == "lvis/9" and records[0].image == str(tmp_path / "val2017" / "000000000009.jpg")
    assert region.category == {"en": "bow (weapon)"} and region.definition == {"en": "a weapon for shooting arrows"}
    assert region.extra["synonyms"] == ["bow_(weapon)", "longbow"]
    ds = load_region_dataset(str(out), tasks=["explain"])
    assert len(ds) == 1 and "a weapon for shooting arrows" in ds[0]["meta"]["answer"]


def test_paco_part_names(tmp_path, capsys):
    png(tmp_path / "000000000139.jpg")
    cats = [
        {"id": 1, "name": "mug:handle", "supercategory": "mug", "def": "the part of a mug you hold"},
        {"id": 2, "name": "mug", "supercategory": "OBJECT"},
    ]
    anns = [
        {"id": 1, "image_id": 139, "category_id": 1, "bbox": [1, 1, 4, 4]},
        {"id": 2, "image_id": 139, "category_id": 2, "bbox": [0, 0, 10, 10]},
    ]
    counts, records, out = convert(tmp_path, capsys, "paco", coco_file(cats, anns), images=tmp_path)
    rec = records[0]
    assert rec.source == "paco" and rec.regions[0].category == {"en": "handle of mug"}
    assert rec.regions[0].extra["raw_category"] == "mug:handle" and rec.regions[0].definition == {
        "en": "the part of a mug you hold"
    }
    assert rec.regions[1].category == {"en": "mug"} and rec.regions[1].masks == {}
    assert len(load_region_dataset(str(out), tasks=["explain"])) == 1  # only the part has a definition


@pytest.mark.parametrize(
    "source,file_name,on_disk",
    [
        (
            "objects365",
            "images/v1/patch8/objects365_v1_00420917.jpg",
            "patch8/objects365_v1_00420917.jpg",
        ),  # mmdet's rewrite
        ("v3det", "images/a00000066/1.jpg", "images/a00000066/1.jpg"),
    ],
)
def test_detection_boxes(tmp_path, capsys, source, file_name, on_disk):
    png(tmp_path / on_disk)
    cats = [{"id": 3, "name": "Sneakers"}, {"id": 4, "name": "Chair"}]
    anns = [
        {
            "id": 1,
            "image_id": 7,
            "category_id": 3,
            "bbox": [2.5, 3.0, 10.0, 8.0],
            "area": 80.0,
            "iscrowd": 0,
            "isfake": 0,
        },
        {"id": 2, "image_id": 7, "category_id": 4, "bbox": [1.0, 1.0, 0.0, 5.0], "area": 0.0, "iscrowd": 0},
    ]
    images = [{"id": 7, "file_name": file_name, "height": H, "width": W}]
    counts, records, out = convert(tmp_path, capsys, source, coco_file(cats, anns, images), images=tmp_path)
    assert counts == {"source": source, "out": str(out), "records": 1, "regions": 1, "skipped": {"empty_box": 1}}
    region = records[0].regions[0]
    assert (
        records[0].id == f"{source}/7"
        and region.boxes == {0: [2.5, 3.0, 10.0, 8.0]}
        and region.category == {"en": "Sneakers"}
    )
    assert load_region_dataset(str(out), tasks=["category"])[0]["prompt"]["box"].tolist() == [2.5, 3.0, 12.5, 11.0]


def refcoco_instances():
    m = box_mask(4, 12, 5, 15)
    return m, {
        "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "height": H, "width": W}],
        "annotations": [
            {
                "id": 1718868,
                "image_id": 581857,
                "category_id": 1,
                "segmentation": rle(m),
                "area": 80,
                "bbox": [5, 4, 10, 8],
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def test_refcoco_refs_pickle_and_split(tmp_path, capsys):
    png(tmp_path / "COCO_train2014_000000581857.jpg")
    m, inst = refcoco_instances()
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    refs = [
        {
            "sent_ids": [0, 1],
            "file_name": "COCO_train2014_000000581857_16.jpg",
            "ann_id": 1718868,
            "ref_id": 0,
            "image_id": 581857,
            "split": "train",
            "category_id": 1,
            "sentences": [
                {"tokens": ["man", "on", "left"], "raw": "Man on left", "sent_id": 0, "sent": "man on left"},
                {"tokens": ["guy"], "raw": "guy in red", "sent_id": 1, "sent": "guy in red"},
            ],
        },
        {
            "sent_ids": [2],
            "file_name": "x.jpg",
            "ann_id": 1718868,
            "ref_id": 1,
            "image_id": 581857,
            "split": "testA",
            "category_id": 1,
            "sentences": [{"raw": "a person", "sent": "a person", "sent_id": 2, "tokens": []}],
        },
        {
            "sent_ids": [3],
            "file_name": "x.jpg",
            "ann_id": 999,
            "ref_id": 2,
            "image_id": 581857,
            "split": "train",
            "category_id": 1,
            "sentences": [{"raw": "gone", "sent": "gone", "sent_id": 3, "tokens": []}],
        },
    ]
    counts, records, out = convert(
        tmp_path,
        capsys,
        "refcoco",
        pickle.dumps(refs, protocol=2),
        "--split",
        "train",
        name="refs(unc).p",
        images=tmp_path,
    )
    assert (
        counts["records"] == 1
        and counts["regions"] == 1
        and counts["skipped"] == {"other_split": 1, "ann_id_not_in_instances": 1}
    )
    region = records[0].regions[0]
    assert region.short_caption == {"en": "Man on left"} and region.category == {"en": "person"}
    assert region.extra["expressions"] == ["Man on left", "guy in red"] and np.array_equal(region.masks[0].decode(), m)
    sample = load_region_dataset(str(out), tasks=["short_caption"])[0]
    assert sample["meta"]["answer"] == "Man on left" and sample["pixels"].shape == (H, W, 3)


def test_refcoco_pickle_with_code_is_refused(tmp_path):
    from data_pipeline.converters.refcoco import load_refs

    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps([{"x": np.int64(1)}]))  # a numpy scalar needs a global
    with pytest.raises(ConvertError, match="only plain"):
        load_refs(str(path))


def test_visual_genome_regions(tmp_path, capsys):
    png(tmp_path / "VG_100K_2" / "1.jpg")
    data = [
        {
            "id": 1,
            "regions": [
                {
                    "region_id": 1382,
                    "width": 8,
                    "height": 6,
                    "image_id": 1,
                    "phrase": "the clock is green in colour",
                    "y": 3,
                    "x": 4,
                },
                {"region_id": 1383, "width": 8, "height": 6, "image_id": 1, "phrase": " ", "y": 3, "x": 4},
            ],
        },
        {
            "id": 2,
            "regions": [
                {"region_id": 9, "width": 2, "height": 2, "image_id": 2, "phrase": "missing image", "y": 0, "x": 0}
            ],
        },
    ]
    counts, records, out = convert(tmp_path, capsys, "vg", data, images=tmp_path)
    assert counts["records"] == 1 and counts["skipped"] == {"no_phrase": 1, "image_not_found": 1}
    assert records[0].image == str(tmp_path / "VG_100K_2" / "1.jpg") and records[0].regions[0].boxes == {
        0: [4.0, 3.0, 8.0, 6.0]
    }
    assert load_region_dataset(str(out), tasks=["short_caption"])[0]["meta"]["answer"] == "the clock is green in colour"


def test_osprey_descriptions_and_conversations(tmp_path, capsys):
    png(tmp_path / "000000000042.jpg")
    m1, m2 = box_mask(0, 5, 0, 5), box_mask(10, 15, 10, 20)
    seg = lambda m: rle(m)  # noqa: E731
    data = [
        {
            "id": 42,
            "file_name": "COCO_train2014_000000000042.jpg",
            "height": H,
            "width": W,
            "annotation": [
                {"bbox": [0, 0, 5, 5], "segmentation": seg(m1), "category_id": 1},
                {"bbox": [10, 10, 10, 5], "segmentation": seg(m2)},
            ],
            "description": [
                "<region1>: A small dark square in the corner.",
                "<region2>: A wide bright patch near the middle.",
            ],
        },
        {
            "id": 43,
            "file_name": "COCO_train2014_000000000042.jpg",
            "height": H,
            "width": W,
            "annotation": [{"bbox": [0, 0, 5, 5], "segmentation": seg(m1)}],
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is <region1> made of?"},
                {"from": "gpt", "value": "It looks like wood."},
            ],
        },
        {
            "id": 44,
            "file_name": "COCO_train2014_000000000042.jpg",
            "height": H,
            "width": W,
            "annotation": [{"segmentation": seg(m1)}, {"segmentation": seg(m2)}],
            "conversations": [
                {"from": "human", "value": "Compare <region1> and <region2>."},
                {"from": "gpt", "value": "..."},
            ],
        },
    ]
    counts, records, out = convert(tmp_path, capsys, "osprey", data, images=tmp_path)
    assert counts["records"] == 2 and counts["regions"] == 3 and counts["skipped"] == {"multi_region_turn": 1}
    assert records[0].image == str(tmp_path / "000000000042.jpg")
    assert [r.detailed_caption["en"] for r in records[0].regions] == [
        "A small dark square in the corner.",
        "A wide bright patch near the middle.",
    ]
    conv = records[1].regions[0].conversations
    assert conv == [
        {"role": "user", "content": f"{IMAGE_PLACEHOLDER}\nWhat is the region made of?"},
        {"role": "assistant", "content": "It looks like wood."},
    ]
    ds = load_region_dataset(str(out), tasks=["detailed_caption", "conversation"])
    assert len(ds) == 3 and ds[2]["turns"][-1]["content"] == "It looks like wood."


def _frames(n, h=32, w=48):
    frames = np.zeros((n, h, w, 3), np.uint8)
    masks = []
    for t in range(n):
        m = np.zeros((h, w), bool)
        m[8:20, 4 + 3 * t : 16 + 3 * t] = True
        frames[t][m] = (220, 40, 40)
        masks.append(m)
    return frames, masks


def test_sav_masklets(tmp_path, capsys):
    frames, masks = _frames(8)
    write_video_mp4(str(tmp_path / "sav_000001.mp4"), frames)
    empty = rle(np.zeros((32, 48), bool))
    data = {
        "video_id": "sav_000001",
        "video_duration": 0.33,
        "video_frame_count": 8,
        "video_height": 32,
        "video_width": 48,
        "video_resolution": 1536,
        "video_environment": "Indoor",
        "video_split": "train",
        "masklet_id": [0, 1],
        "masklet_type": ["manual", "manual"],
        "masklet_num": 2,
        "masklet": [[rle(masks[0]), empty], [rle(masks[4]), empty]],
        "masklet_first_appeared_frame": [0, 0],
    }
    counts, records, out = convert(tmp_path, capsys, "sav", data, images=tmp_path, name="sav_000001_manual.json")
    assert counts["records"] == 1 and counts["regions"] == 1 and counts["skipped"] == {"empty_masklet": 1}
    region = records[0].regions[0]
    assert records[0].video == str(tmp_path / "sav_000001.mp4") and sorted(region.masks) == [
        0,
        4,
    ]  # annotated frame 1 = video frame 4
    assert np.array_equal(region.masks[4].decode(), masks[4]) and region.boxes[4] == [16.0, 8.0, 12.0, 12.0]
    ds = RegionDataset(list(iter_records(out)), RegionDatasetConfig(tasks=("category",)))
    assert (
        len(ds) == 0
    )  # SA-V has no text: refinement or the streaming builder adds it (tests/test_data_pipeline_refine.py)


def test_ytvis_frames(tmp_path, capsys):
    frames, masks = _frames(4)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{t:05d}.png")
        (tmp_path / "vid").mkdir(exist_ok=True)
        Image.fromarray(f).save(tmp_path / "vid" / f"{t * 5:05d}.png")
    names = [f"vid/{t * 5:05d}.png" for t in range(4)]
    data = {
        "info": {},
        "licenses": [],
        "categories": [{"id": 1, "name": "person", "supercategory": "object"}],
        "videos": [{"id": 3, "width": 48, "height": 32, "length": 4, "file_names": names}],
        "annotations": [
            {
                "id": 1,
                "video_id": 3,
                "category_id": 1,
                "iscrowd": 0,
                "height": 32,
                "width": 48,
                "length": 1,
                "segmentations": [rle(masks[0]), None, rle(masks[2]), rle(masks[3])],
                "bboxes": [[4, 8, 12, 12], None, [10, 8, 12, 12], [13, 8, 12, 12]],
                "areas": [144, None, 144, 144],
            }
        ],
    }
    counts, records, out = convert(tmp_path, capsys, "ytvis", data, images=tmp_path)
    rec = records[0]
    assert rec.frames == names and rec.frames_root == str(tmp_path) and sorted(rec.regions[0].masks) == [0, 2, 3]
    sample = load_region_dataset(str(out), tasks=["category"], track_frames=2)[0]
    assert (
        sample["media_type"] == "video"
        and sample["pixels"].shape == (2, 32, 48, 3)
        and sample["meta"]["answer"] == "person"
    )


def test_videorefer_single_object(tmp_path, capsys):
    frames, masks = _frames(6)
    write_video_mp4(str(tmp_path / "videos" / "a.mp4"), frames)
    one = {
        "id": 0,
        "video": "videos/a.mp4",
        "conversations": [
            {"from": "human", "value": "<video>\nWhat is <region> doing in the video?"},
            {"from": "gpt", "value": "It slides to the right."},
        ],
        "annotation": [{"0": {"segmentation": rle(masks[0])}, "3": {"segmentation": rle(masks[3])}}],
    }
    two = {
        "id": 1,
        "video": "videos/a.mp4",
        "conversations": [
            {"from": "human", "value": "<video>\nCompare <region> and <region>."},
            {"from": "gpt", "value": "..."},
        ],
        "annotation": [{"0": {"segmentation": rle(masks[0])}}, {"0": {"segmentation": rle(masks[1])}}],
    }
    counts, records, out = convert(tmp_path, capsys, "videorefer", [one, two], images=tmp_path)
    assert counts["records"] == 1 and counts["skipped"] == {"multi_region_turn": 1}
    region = records[0].regions[0]
    assert (
        sorted(region.masks) == [0, 3]
        and region.conversations[0]["content"] == f"{IMAGE_PLACEHOLDER}\nWhat is the region doing in the video?"
    )
    sample = load_region_dataset(str(out), tasks=["conversation"], track_frames=2)[0]
    assert sample["pixels"].shape == (2, 32, 48, 3) and sample["turns"][-1]["content"] == "It slides to the right."


def test_pam_release_lines(tmp_path, capsys):
    png(tmp_path / "coco" / "1.jpg")
    good = {
        "id": "a",
        "type": "image",
        "image": "coco/1.jpg",
        "bbox": [1, 1, 5, 5],
        "points": None,
        "labels": None,
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is the category of the region?"},
            {"from": "gpt", "value": "cup"},
        ],
    }
    lines = json.dumps(good) + "\n" + '{"type": "image", "image": "coco/1.jpg"}\n' + "{broken\n"
    counts, records, out = convert(
        tmp_path, capsys, "pam-release", lines.encode(), "--skip-bad", "2", name="release_en.jsonl", images=tmp_path
    )
    assert counts["records"] == 1 and counts["skipped"] == {"malformed": 2} and len(counts["malformed"]) == 2
    assert (
        records[0].image == str(tmp_path / "coco" / "1.jpg")
        and records[0].regions[0].conversations[-1]["content"] == "cup"
    )
    assert load_region_dataset(str(out), tasks=["conversation"])[0]["turns"][-1]["content"] == "cup"


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "i.json").write_text(
        json.dumps(
            coco_file([{"id": 1, "name": "a"}], [{"id": 1, "image_id": 139, "category_id": 99, "bbox": [1, 1, 4, 4]}])
        )
    )
    assert main(["convert", "coco", "--annotations", str(tmp_path / "i.json"), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "annotations[0]" in err and "`category_id`" in err
    assert (
        main(["convert", "coco", "--annotations", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.jsonl")]) == 2
    )
    assert "not found" in capsys.readouterr().err
    assert (
        main(
            [
                "convert",
                "coco",
                "--annotations",
                str(tmp_path / "i.json"),
                "--split",
                "val",
                "--out",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 2
    )
    assert "takes no option(s) ['split']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="convert it first: python -m data_pipeline convert coco"):
        load_region_dataset(str(tmp_path / "i.json"), format="coco")


def test_pam_never_imports_data_pipeline():
    """data_pipeline drives pam; the library must stay importable without it. The one exception is the
    launcher's `pam data` verb (pam/cli/data.py), which imports it lazily, inside the verb."""
    import ast
    from pathlib import Path

    offenders = []
    for path in (Path(__file__).resolve().parents[1] / "pam").rglob("*.py"):
        if path.as_posix().endswith("pam/cli/data.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] == "data_pipeline"]
    assert offenders == []
