"""Video benchmarks track the clip, then the predictor picks the LLM's frames (generation.track_frames),
as upstream and training do: SAM 2 gets every frame from the prompt frame on, the LLM the model's
video_num_frames, and the answer equals PAMPredictor.predict_video on those frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pam.data.video import read_frame_files, read_video, write_video_mp4
from pam.eval import get_benchmark
from pam.eval.generation import PAMGenerator, item_seed
from pam.eval.media import frame_files, load_clip
from pam.eval.results import write_results
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.utils.config import ConfigError

from .test_eval_readers import _rle, write_frames

H, W = 64, 96
SAMPLED = {"do_sample": True, "max_new_tokens": 4}


def _mp4(path: Path, n: int) -> None:
    rng = np.random.RandomState(0)
    frames = (rng.rand(n, H, W, 3) * 60).astype(np.uint8)
    for t in range(n):
        frames[t, 16:40, 4 + 5 * t : 28 + 5 * t] = (230, 40, 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video_mp4(str(path), frames)


def _hc_stvg(tmp: Path) -> Path:
    """One HC-STVG entry over a generated 10-frame mp4: the person is boxed on frame 2 (st_frame 3,
    1-based), the clip is 2..7 (six boxes, no end frame in the official files)."""
    _mp4(tmp / "videos" / "v1.mp4", 10)
    doc = {
        "v1.mp4": {
            "English": "The red block slides to the right.",
            "st_frame": 3,
            "bbox": [[14, 16, 24, 24]] * 6,
            "img_num": 10,
        }
    }
    path = tmp / "test_v1.json"
    path.write_text(json.dumps(doc))
    return path


class _Spy:
    """Counts the frames every SAM 2 tracking state gets and the frames handed to the perceiver."""

    def __init__(self, monkeypatch, sam2):
        self.tracked: list[torch.Tensor] = []
        self.llm_frames: list[list[int]] = []
        iter_track, track_video = sam2.iter_track, sam2.track_video

        def spy_iter(frames, prompt):
            self.tracked.append(frames.detach().clone())
            return iter_track(frames, prompt)

        def spy_track(frames, prompt, keep):
            self.llm_frames.append(list(keep))
            return track_video(frames, prompt, keep)

        monkeypatch.setattr(sam2, "iter_track", spy_iter)
        monkeypatch.setattr(sam2, "track_video", spy_track)


def test_hc_stvg_tracks_every_frame_and_matches_predict_video(tmp_path, debug_bundle, monkeypatch):
    vnf = debug_bundle.model.config.video_num_frames  # 4 in the debug model
    bench = get_benchmark("hc_stvg", overrides={"generation": {**SAMPLED, "track_frames": 0}})
    (item,) = bench.read_items(_hc_stvg(tmp_path))
    gen = PAMGenerator(debug_bundle, bench.config.generation)
    spy = _Spy(monkeypatch, debug_bundle.model.sam2)
    gen.seed(item["id"])
    (row,) = bench.predict([item], gen)
    assert [t.shape[0] for t in spy.tracked] == [6]  # frames 2..7, every one of them, one state
    assert spy.llm_frames == [[0, 1, 3, 5]] and len(spy.llm_frames[0]) == vnf  # select_frames(6, 4)

    # reference: the predictor directly on all 6 frames of the clip, with the item's seed
    video = str(tmp_path / "videos" / "v1.mp4")
    frames = read_video(video, list(range(2, 8)))
    proc = debug_bundle.processor
    assert torch.equal(spy.tracked[0], proc.preprocess_video(frames).to(spy.tracked[0].dtype))
    settings = GenerationSettings(**bench.config.generation.hf_kwargs(), max_new_tokens=4, seed=None)
    predictor = PAMPredictor(debug_bundle, generation=settings)
    torch.manual_seed(item_seed(0, item["id"]))
    ref = predictor.predict_video(frames, {"box": item["box"]})
    assert row["prediction"] == ref.text and ref.text  # sampled text, so equality is not vacuous
    assert ref.frame_indices == list(range(6)) and len(ref.llm_frames) == vnf

    # what the benchmark loads for other values: 32 (the default) covers the clip; 5 are spread with
    # the first and last kept (spread_frames), the predictor then picks the LLM's among them
    assert np.array_equal(load_clip(video, 2, 7, 32), frames)
    assert np.array_equal(load_clip(video, 2, 7, 5), frames[[0, 1, 2, 3, 5]])  # linspace(0, 5, 5) floored, as upstream


def test_videorefer_tracks_from_the_prompt_frame(tmp_path, debug_bundle, monkeypatch):
    """The mask is given on frame 3 of a 6-frame clip: SAM 2 tracks frames 3..5, starting there."""
    write_frames(tmp_path / "videos" / "clip1", 6)
    entry = {
        "id": 0,
        "video": "clip1",
        "Question": "What is <object0><region> doing?",
        "type": "Basic Questions",
        "options": ["(A) sliding right", "(B) jumping"],
        "Answer": "(A) sliding right",
        "frame_idx": "3",
        "annotation": [{"3": {"segmentation": _rle()}}],
    }
    (tmp_path / "VideoRefer-Bench-Q.json").write_text(json.dumps([entry]))
    bench = get_benchmark("videorefer_q", overrides={"generation": {**SAMPLED, "track_frames": 0}})
    (item,) = bench.read_items(tmp_path / "VideoRefer-Bench-Q.json")
    spy = _Spy(monkeypatch, debug_bundle.model.sam2)
    bench.predict([item], PAMGenerator(debug_bundle, bench.config.generation))
    frames = read_frame_files(frame_files(tmp_path / "videos" / "clip1"), [3, 4, 5])
    assert len(spy.tracked) == 1 and torch.equal(
        spy.tracked[0], debug_bundle.processor.preprocess_video(frames).to(spy.tracked[0].dtype)
    )
    assert spy.llm_frames == [[0, 1, 2]]


def test_track_frames_is_validated_and_recorded(tmp_path, debug_bundle):
    with pytest.raises(ValueError, match=r"hc_stvg\.generation\.track_frames"):
        get_benchmark("hc_stvg", overrides={"generation": {"track_frames": -1}})
    bench = get_benchmark("hc_stvg", overrides={"generation": {"track_frames": 3}})  # fewer than the debug model's 4
    with pytest.raises(ValueError, match=r"generation\.track_frames is 3, fewer than the 4 frames"):
        PAMGenerator(debug_bundle, bench.config.generation)
    with pytest.raises(
        ConfigError,
        match=r"videorefer_d\.generation\.video_num_frames was replaced by videorefer_d\.generation\.track_frames",
    ):
        get_benchmark("videorefer_d", overrides={"generation": {"video_num_frames": 16}})
    bench = get_benchmark("videorefer_d", overrides={"generation": {"track_frames": 0}})
    result = write_results(
        tmp_path,
        benchmark=bench.name,
        scores={"average": 1.0},
        settings=bench.settings(),
        checkpoint=None,
        data=None,
        num_items=1,
    )
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert result["settings"]["generation"]["track_frames"] == on_disk["settings"]["generation"]["track_frames"] == 0
    assert (
        get_benchmark("videorefer_d").settings()["generation"]["track_frames"] == 32
    )  # the default, as training's data.track_frames
