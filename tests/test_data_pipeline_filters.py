"""Filters drop what they should on hand-made regions; translation goes through a real 127.0.0.1
chat server; prompt-type variants derive boxes and points from masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_pipeline.augment import add_prompt_variants, translate_records
from data_pipeline.cli import main
from data_pipeline.filters import DedupFilter, LabelAgreementFilter, LanguageFilter, LengthFilter, apply_filters
from data_pipeline.manifest import Manifest
from data_pipeline.records import iter_records, write_records
from pam.clients import OpenAIChatBackend
from pam.data.schema import MaskAnnotation, Record

from .helpers.chat_server import ChatServer, last_user_text


def rec(rid, *regions, image="a.png"):
    return Record.from_dict({"id": rid, "image": image, "regions": list(regions)})


def keep(flt, region, rid="r"):
    record = rec(rid, region)
    return flt(record, record.regions[0])


def test_length_filter():
    f = LengthFilter(limits={"category": (1, 3), "detailed_caption": (5, 12)})
    assert (
        keep(f, {"box": [0, 0, 2, 2], "category": "red cup", "detailed_caption": "a red cup on a wooden table"}) is None
    )
    assert keep(f, {"box": [0, 0, 2, 2], "category": "a very large red cup"}) == "too_long:category"
    assert (
        keep(f, {"box": [0, 0, 2, 2], "category": "cup", "detailed_caption": "a red cup"})
        == "too_short:detailed_caption"
    )
    assert (
        keep(f, {"box": [0, 0, 2, 2], "detailed_caption": {"en": "a red cup on a wooden table", "zh": "杯子"}})
        == "too_short:detailed_caption"
    )  # zh counts characters
    assert keep(f, {"box": [0, 0, 2, 2], "detailed_caption": {"zh": "木桌上放着一个红色的杯子"}}) is None


def test_language_filter():
    f = LanguageFilter()
    assert keep(f, {"box": [0, 0, 2, 2], "category": {"en": "cup", "zh": "杯子"}}) is None
    assert keep(f, {"box": [0, 0, 2, 2], "category": {"en": "cup 杯子"}}) == "wrong_language:category.en"
    assert (
        keep(f, {"box": [0, 0, 2, 2], "short_caption": {"zh": "a red 杯子 on the table"}})
        == "wrong_language:short_caption.zh"
    )
    assert (
        keep(f, {"box": [0, 0, 2, 2], "short_caption": {"zh": "I cannot translate this."}})
        == "wrong_language:short_caption.zh"
    )


@pytest.fixture(scope="module")
def agreement():
    return LabelAgreementFilter(threshold=0.5)


def test_label_agreement_filter_uses_minilm(agreement):
    from sentence_transformers import util

    def region(generated, source):
        return {"box": [0, 0, 2, 2], "category": generated, "extra": {"source_category": source}}

    assert keep(agreement, region("kitten", "cat")) is None
    assert keep(agreement, region("coffee mug", "cup")) is None
    assert keep(agreement, region("motorcycle", "cat")) == "label_disagrees"
    assert keep(agreement, region("banana", "potted_plant".replace("_", " "))) == "label_disagrees"
    assert keep(agreement, {"box": [0, 0, 2, 2], "category": "anything"}) is None  # no source label: kept
    emb = agreement.model.encode(["motorcycle", "cat"], convert_to_tensor=True)
    assert agreement.similarity([("motorcycle", "cat")])[0] == pytest.approx(
        float(util.cos_sim(emb[0], emb[1])), abs=1e-5
    )


def test_dedup_filter_and_apply_counts():
    a = {"box": [1, 1, 5, 5], "category": "cup", "short_caption": "a red cup"}
    records = [
        rec(
            "one",
            a,
            {"box": [1.2, 1, 5, 5], "category": "cup", "short_caption": "A red  cup"},
            {"box": [9, 9, 5, 5], "category": "cup", "short_caption": "a red cup"},
        ),
        rec("two", a),  # same image, same box, same texts as one/r0
        rec("three", a, image="b.png"),  # another image: kept
    ]
    manifest = Manifest(command="filter")
    out = apply_filters(records, [LengthFilter(), DedupFilter()], manifest)
    assert [r.id for r in out] == ["one", "three"] and len(out[0].regions) == 2
    steps = {k: v.as_dict() for k, v in manifest.steps.items()}
    assert steps["filter:dedup"] == {"kept": 3, "dropped": {"duplicate": 2}, "dropped_total": 2}
    assert steps["filter:length"]["kept"] == 5 and steps["records"] == {
        "kept": 2,
        "dropped": {"no_region_left": 1},
        "dropped_total": 1,
    }


def test_filter_cli_writes_manifest(tmp_path, capsys):
    write_records(
        tmp_path / "in.jsonl",
        [
            rec("x", {"box": [0, 0, 2, 2], "category": {"en": "cup", "zh": "cup"}}),
            rec("y", {"box": [0, 0, 2, 2], "category": "cup"}),
        ],
    )
    assert main(["filter", "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r.id for r in iter_records(tmp_path / "out.jsonl")] == ["y"]
    assert printed == json.loads((tmp_path / "out.manifest.json").read_text())
    assert printed["steps"]["filter:language"]["dropped"] == {"wrong_language:category.zh": 1}
    assert printed["inputs"][0]["path"].endswith("in.jsonl") and len(printed["inputs"][0]["sha256"]) == 64


ZH = {"red cup": "红色杯子", "a red cup on the table": "桌上的红色杯子", "it rolls away": "它滚走了"}


def test_translate_through_server():
    record = Record.from_dict(
        {
            "id": "v",
            "video": "v.mp4",
            "regions": [
                {
                    "masks": {},
                    "boxes": {"0": [0, 0, 2, 2]},
                    "category": "red cup",
                    "short_caption": {"en": "a red cup on the table", "zh": "已有"},
                    "events": [{"start_frame": 0, "end_frame": 3, "caption": "it rolls away"}],
                }
            ],
        }
    )
    with ChatServer(lambda r, i: ZH[last_user_text(r).rsplit("\n\n", 1)[1]]) as server:
        backend = OpenAIChatBackend(base_url=server.base_url, model="mt", api_key_env=None)
        manifest = Manifest(command="translate")
        (out,) = translate_records([record], backend, manifest, max_workers=2)
    region = out.regions[0]
    assert (
        region.category == {"en": "red cup", "zh": "红色杯子"} and region.short_caption["zh"] == "已有"
    )  # present zh untouched
    assert region.events[0].caption == {"en": "it rolls away", "zh": "它滚走了"}
    assert server.count == 2 and manifest.step("translate").kept == 2 and manifest.prompts == {"translate_zh": 1}
    assert sorted(last_user_text(r).split("\n\n")[0] for r in server.requests) == [
        "Translate this category into Simplified Chinese. Answer with the translation only.",
        "Translate this event caption into Simplified Chinese. Answer with the translation only.",
    ]
    assert LanguageFilter()(out, region) is None


def test_prompt_variants_from_masks():
    mask = np.zeros((20, 30), bool)
    mask[4:10, 6:20] = True
    mask[4:6, 6:10] = False  # a notch: box pixels outside the mask
    region = {"mask": MaskAnnotation.from_mask(mask).to_json(), "category": "cup"}
    records = [Record.from_dict({"id": "a", "image": "a.png", "regions": [region]})]
    manifest = Manifest(command="variants")
    (out,) = add_prompt_variants(records, manifest, num_points=4, negative_points=2, seed=3)
    r = out.regions[0]
    assert r.boxes[0] == [6.0, 4.0, 14.0, 6.0]
    pts, labels = np.array(r.points[0]), r.point_labels[0]
    assert labels == [1, 1, 1, 1, 0, 0]
    cells = pts.astype(int)
    assert mask[cells[:4, 1], cells[:4, 0]].all() and not mask[cells[4:, 1], cells[4:, 0]].any()
    assert ((cells[4:, 0] >= 6) & (cells[4:, 0] < 20) & (cells[4:, 1] >= 4) & (cells[4:, 1] < 10)).all()
    again = add_prompt_variants(
        [Record.from_dict({"id": "a", "image": "a.png", "regions": [region]})],
        Manifest(command="v"),
        num_points=4,
        negative_points=2,
        seed=3,
    )
    assert again[0].regions[0].points == r.points  # seeded by record, region and frame
    assert manifest.step("variants").kept == 1
