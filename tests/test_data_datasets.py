"""RegionDataset: the sample contract, tasks and turns, video clips, and skipping bad samples."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from pam.data.datasets import RegionDataset, RegionDatasetConfig, load_region_dataset, select_subset
from pam.data.prompt_sampling import PromptSamplingConfig
from pam.data.readers import read_jsonl
from pam.data.sampler import RegionSampler
from pam.data.schema import MaskAnnotation, Record, RegionAnnotation
from pam.data.skips import NoGoodSample, SkipTracker, TooManyBadSamples
from pam.data.synthetic import SyntheticConfig, generate_quickstart
from pam.data.turns import explain_answer
from pam.data.video import write_video_mp4
from pam.processing.prompts import task_prompt

SAMPLE_KEYS = {
    "id",
    "media_type",
    "image_key",
    "pixels",
    "frame_indices",
    "prompt",
    "gt_mask",
    "turns",
    "task",
    "language",
    "meta",
    "skipped",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    config = SyntheticConfig(
        num_train=12, num_val=4, num_test=2, num_train_videos=4, num_val_videos=2, num_test_videos=1
    )
    return generate_quickstart(str(out), config)


def test_image_sample_contract(quick):
    ds = load_region_dataset(quick["train"], languages=["en", "zh"])
    records = read_jsonl(quick["train"])
    assert len(ds) == 12 * 7  # per image: 5 EN tasks + category, explain, short caption in ZH (no ZH detailed caption)
    for i in range(14):
        s = ds[i]
        assert set(s) == SAMPLE_KEYS and s["skipped"] == []
        rec = records[i // 7]
        assert s["media_type"] == "image" and s["frame_indices"] is None
        assert (
            s["image_key"] == rec.image
            and s["pixels"].dtype == np.uint8
            and s["pixels"].shape == (rec.height, rec.width, 3)
        )
        assert np.array_equal(s["gt_mask"], rec.regions[0].masks[0].decode())
        assert s["id"] == f"{rec.id}/r0/{s['task']}/{s['language']}"
        assert s["turns"][0] == {"role": "user", "content": task_prompt(s["task"], s["language"])}
        region = rec.regions[0]
        expected = {
            "category": region.text("category", s["language"]),
            "explain": explain_answer(
                region.text("category", s["language"]),
                region.text("definition", s["language"]),
                region.text("function", s["language"]),
                s["language"],
            ),
            "short_caption": region.text("short_caption", s["language"]),
            "detailed_caption": region.text("detailed_caption", s["language"]),
        }[s["task"]]
        assert s["turns"][1] == {"role": "assistant", "content": expected}
        assert s["meta"]["record_id"] == rec.id and s["meta"]["answer"] == expected
        p = s["prompt"]
        assert (p["box"] is None) != (p["points"] is None) and p["mask"] is None
        if p["points"] is not None:
            assert s["gt_mask"][p["points"][:, 1].astype(int), p["points"][:, 0].astype(int)].all()
        else:
            ys, xs = np.nonzero(s["gt_mask"])
            np.testing.assert_array_equal(p["box"], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_explain_template():
    assert (
        explain_answer("tomato", "a red fruit.", "eaten in salads", "en")
        == "tomato. Definition: a red fruit. Function: eaten in salads."
    )
    assert explain_answer("番茄", "一种果实。", None, "zh") == "番茄。定义：一种果实。"


def test_samples_are_reproducible_and_epochs_differ(quick):
    ds = load_region_dataset(quick["train"], task_mode="random", languages=["en", "zh"])
    assert len(ds) == 12
    first = [(ds[i]["id"], str(ds[i]["prompt"])) for i in range(12)]
    assert first == [(ds[i]["id"], str(ds[i]["prompt"])) for i in range(12)]
    ds.set_epoch(1)
    second = [(ds[i]["id"], str(ds[i]["prompt"])) for i in range(12)]
    assert first != second
    tasks = Counter()
    for epoch in range(30):
        ds.set_epoch(epoch)
        tasks[ds[0]["task"], ds[0]["language"]] += 1
    assert len(tasks) >= 5  # random mode visits many of the 8 (task, language) choices


def test_video_samples_clip_and_streaming_history(quick):
    ds = load_region_dataset(quick["train_video"], tasks=["video_caption", "category"], track_frames=6)
    records = read_jsonl(quick["train_video"])
    seen_mp4 = seen_frames = 0
    for i in range(len(ds)):
        s = ds[i]
        rec = records[int(s["meta"]["record_id"].rsplit("/", 1)[1])]
        region = rec.regions[0]
        n = len(rec.frames) if rec.frames else len(region.masks)
        fi = s["frame_indices"]
        assert s["media_type"] == "video" and s["pixels"].shape == (len(fi), 128, 128, 3)
        seen_mp4 += rec.video is not None
        seen_frames += rec.frames is not None
        if s["task"] == "category":
            assert fi[0] == 0 and len(fi) == 6 and fi[-1] == n - 1
            continue
        k = s["meta"]["event_index"]
        event = region.events[k]
        assert (
            fi[0] == event.start_frame
            and fi[-1] == event.end_frame
            and len(fi) == min(6, event.end_frame - event.start_frame + 1)
        )
        history = region.events[k - 1].caption["en"] if k else None
        assert s["turns"] == [
            {"role": "user", "content": task_prompt("video_caption", "en", history=history)},
            {"role": "assistant", "content": event.caption["en"]},
        ]
        assert np.array_equal(s["gt_mask"], region.masks[fi[0]].decode())
        if rec.frames is not None:  # lossless PNG frames: the object colour fills the mask exactly
            assert (s["pixels"][0][s["gt_mask"]] == region.extra["rgb"]).all()
        assert s["image_key"].endswith(",".join(map(str, fi))) or s["image_key"].endswith(f"{fi[-1]:05d}.png")
    assert seen_mp4 and seen_frames


def test_conversations_are_used_as_given(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    turns = [
        {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "a thing"},
        {"role": "user", "content": "Colour?"},
        {"role": "assistant", "content": "black"},
    ]
    rec = Record(
        id="c",
        image=str(tmp_path / "a.png"),
        regions=[RegionAnnotation(boxes={0: [1.0, 1.0, 5.0, 5.0]}, category={"en": "x"}, conversations=turns)],
    )
    ds = RegionDataset([rec])
    assert len(ds) == 1
    s = ds[0]
    assert s["turns"] == turns and s["task"] == "conversation" and s["gt_mask"] is None
    np.testing.assert_array_equal(s["prompt"]["box"], [1, 1, 6, 6])
    assert len(RegionDataset([rec], RegionDatasetConfig(tasks=("category",)))) == 0


def _bad_data(tmp_path):
    """Good image records with one bad record of each kind in between."""
    h, w = 32, 40
    mask = np.zeros((h, w), bool)
    mask[5:20, 8:30] = True
    rle = MaskAnnotation.from_mask(mask)
    img = tmp_path / "ok.png"
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(img)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 300)
    write_video_mp4(str(tmp_path / "ok.mp4"), np.full((4, h, w, 3), 90, np.uint8))

    def image_rec(rid, path=str(img), **region):
        return Record(
            id=rid, image=path, regions=[RegionAnnotation(category={"en": "thing"}, **(region or {"masks": {0: rle}}))]
        )

    bad = [
        (image_rec("corrupt", str(tmp_path / "corrupt.png")), "corrupt_image"),
        (image_rec("missing", str(tmp_path / "nowhere.png")), "missing_media"),
        (image_rec("rle", masks={0: MaskAnnotation(rle={"size": [h, w], "counts": ""})}), "bad_rle"),
        (image_rec("empty", masks={0: MaskAnnotation.from_mask(np.zeros((h, w), bool))}), "empty_mask"),
        (image_rec("box", boxes={0: [100.0, 100.0, 10.0, 10.0]}), "box_outside_image"),
        (
            Record(
                id="video",
                video=str(tmp_path / "corrupt.mp4"),
                regions=[RegionAnnotation(masks={0: rle}, category={"en": "thing"})],
            ),
            "corrupt_video",
        ),
        (
            Record(
                id="frames",
                frames=[str(img), str(tmp_path / "gone.png")],
                regions=[RegionAnnotation(masks={0: rle}, category={"en": "thing"})],
            ),
            "missing_media",
        ),
        (
            Record(
                id="short",
                video=str(tmp_path / "ok.mp4"),
                regions=[RegionAnnotation(masks={9: rle}, category={"en": "thing"})],
            ),
            "corrupt_video",
        ),
    ]
    records = []
    for k, (rec, _) in enumerate(bad):
        records += [image_rec(f"good{k}"), rec]
    records.append(image_rec("good_last"))
    return records, Counter(reason for _, reason in bad)


def test_each_kind_of_bad_sample_is_skipped_and_counted(tmp_path, caplog):
    records, expected = _bad_data(tmp_path)
    ds = RegionDataset(records, RegionDatasetConfig(tasks=("category",)))
    tracker = SkipTracker(max_bad_fraction=0.05, min_seen=0)
    with caplog.at_level(logging.WARNING, logger="pam.data"):
        samples = [ds[i] for i in range(len(ds))]
    tracker.update([s["skipped"] for s in samples])
    assert tracker.counts == expected and tracker.num_seen == len(ds)
    for i, s in enumerate(samples):  # a bad index yields the next (good) record, deterministically
        assert s["meta"]["record_id"].startswith("good")
        if i % 2:
            assert (
                s["meta"]["record_id"] == records[i + 1].id and s["skipped"][0][0] == f"{records[i].id}/r0/category/en"
            )
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "pam.data")
    for rid in ("corrupt", "missing", "rle", "empty", "box", "video", "frames", "short"):
        assert f"(record {rid})" in logged
    assert "bad_rle=1" in tracker.epoch_summary() and "skipped 8 bad samples for 17 seen" in tracker.epoch_summary()
    with pytest.raises(TooManyBadSamples, match=r"8 bad samples skipped for 17 seen \(47.1%\).*missing_media: 2"):
        tracker.check()
    SkipTracker(max_bad_fraction=0.5, min_seen=0).check(num_seen=17)  # fine under a looser limit


def test_skip_tracker_min_seen_and_reset():
    tracker = SkipTracker(max_bad_fraction=0.1, min_seen=50)
    tracker.update([[("a", "bad_rle")], [], []])
    assert (tracker.num_seen, tracker.num_skipped) == (3, 1)
    tracker.check()  # 3 seen < min_seen: silent
    tracker.check(num_seen=60)  # 1 / 60 is under 10 %
    tracker.update([[("b", "empty_mask")]] * 9, num_samples=47)
    assert (tracker.num_seen, tracker.num_skipped) == (50, 10)
    with pytest.raises(TooManyBadSamples, match=r"10 bad samples skipped for 50 seen \(20.0%\)"):
        tracker.check()
    state = tracker.state_dict()
    tracker.reset_epoch()
    assert tracker.epoch_summary() == "data: no bad samples skipped in 0 samples" and tracker.counts["empty_mask"] == 9
    again = SkipTracker()
    again.load_state_dict(state)
    assert again.counts == Counter({"empty_mask": 9, "bad_rle": 1}) and again.num_seen == 50
    tracker.update([("c", "no_prompt")])  # a flat list of pairs also works
    assert tracker.counts["no_prompt"] == 1 and tracker.num_seen == 50


def test_no_good_sample_raises_loudly(tmp_path):
    region = RegionAnnotation(boxes={0: [0.0, 0.0, 2.0, 2.0]}, category={"en": "x"})
    records = [Record(id=f"m{k}", image=str(tmp_path / "none.png"), regions=[region]) for k in range(6)]
    ds = RegionDataset(records, RegionDatasetConfig(max_tries=4))
    with pytest.raises(NoGoodSample, match="no good sample in 4 consecutive indices from 2"):
        ds[2]


def test_dataloader_with_workers_and_sampler(quick):
    ds = load_region_dataset(quick["train"], task_mode="random")
    sampler = RegionSampler(ds, seed=1)
    sampler.set_epoch(0)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=2, collate_fn=list)
    ids = [s["id"] for batch in loader for s in batch]
    assert sorted(i.split("/r0/")[0] for i in ids) == sorted(r.id for r in read_jsonl(quick["train"]))
    assert ids == [ds[i]["id"] for i in sampler.global_order(0)]  # workers build the same samples


def test_subset_and_options(quick):
    records = read_jsonl(quick["train"])
    assert [r.id for r in select_subset(records, "first:3")] == [r.id for r in records[:3]]
    assert [r.id for r in select_subset(records, "end:25%")] == [r.id for r in records[-3:]]
    picked = select_subset(records, "random:5", seed=2)
    assert len(picked) == 5 and picked == select_subset(records, "random:5", seed=2)
    assert len(load_region_dataset(quick["train"], subset="first:2", tasks=["category"])) == 2
    with pytest.raises(ValueError, match="task_mod"):
        load_region_dataset(quick["train"], task_mod="all")
    with pytest.raises(ValueError, match="`data.tasks`"):
        RegionDatasetConfig(tasks=("caption",))
    with pytest.raises(ValueError, match="unknown config field.*`data.prompt.points`"):
        RegionDatasetConfig(prompt={"points": 1})
    assert RegionDatasetConfig(prompt={"box_weight": 1.0}).prompt == PromptSamplingConfig(box_weight=1.0)


def test_approx_lengths(quick):
    from pam.modeling.config import PAMConfig

    ds = load_region_dataset(quick["train"], tasks=["category", "detailed_caption"])
    text_only = ds.approx_lengths()  # no layout yet: visual tokens count as zero
    ds.set_token_layout(PAMConfig().token_layout())  # the paper model: 1042 tokens per image region
    lengths = ds.approx_lengths()
    assert len(lengths) == len(ds)
    assert [n - t for n, t in zip(lengths, text_only)] == [1042] * len(ds)
    assert lengths[1] > lengths[0]  # a detailed caption is longer than a category
    dv = load_region_dataset(quick["train_video"], tasks=["category"])
    text_only = dv.approx_lengths()
    dv.set_token_layout(PAMConfig().token_layout())
    frames = [min(16, len(dv.records[u.record].frames or [])) or 16 for u in dv.units]
    paper_video = {t: 1043 + (t - 1) * (256 + 19) for t in set(frames)}  # first frame + later frames
    assert [n - t for n, t in zip(dv.approx_lengths(), text_only)] == [paper_video[t] for t in frames]
