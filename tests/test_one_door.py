"""One inference door: every front-end gives the predictor's own texts and masks.

The CLI (``pam predict``, ``pam video``, ``pam stream``), the server (its FastAPI app over the
engine), the demo's handlers, the evaluation adapter (:class:`PAMGenerator`), streaming and the
training report's examples each run on the same regions of one image and one short clip, with
the debug checkpoint and greedy decoding; their answers must equal :class:`PAMPredictor` called
directly: the same text, the same mask (equal arrays, IoU 1), the same SAM 2 score.

The debug checkpoint's random LLM answers every prompt with the same newline tokens, which would
make equal texts vacuous; the module's checkpoint is the debug one with its LLM weights redrawn
(seeded), so that answers differ by region and task (checked before anything is compared).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pam.api import load_pam
from pam.checkpoints.pam_checkpoint import export_pam
from pam.cli import main as pam_cli
from pam.data.video import write_video_mp4
from pam.eval.config import GenerationConfig
from pam.eval.generation import PAMGenerator
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.inference.request import RegionRequest
from pam.inference.results import decode_rle
from pam.inference.video_input import load_video
from pam.processing.prompts import IMAGE_TASKS, task_prompt
from pam.serve.demo import DemoHandlers, read_clip
from pam.serve.engine import Engine
from pam.train.report import EXAMPLE_TOKENS, example_predictions
from pam.utils.visualize import overlay

from .helpers import synthetic_image

TOKENS = 6  # greedy tokens per answer (EXAMPLE_TOKENS for the training report)
TASKS = ["category", "short_caption"]
BOX = [50.0, 40.0, 190.0, 130.0]
POINTS = [[100.0, 80.0], [150.0, 100.0]]
LABELS = [1, 0]
REGIONS = [{"box": BOX}, {"points": POINTS, "labels": LABELS}]
CLIP_BOX = [10.0, 20.0, 50.0, 60.0]
ENDS = [0, 1]  # two events of one frame: what fixed windows of 1 frame cut too
EVENTS = [(0, 0), (1, 1)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def same_mask(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == bool
    assert iou(got, want) == 1.0 and np.array_equal(got, want)


def moving_square(num_frames: int = 2) -> np.ndarray:
    rng = np.random.RandomState(3)
    frames = (rng.rand(num_frames, 96, 128, 3) * 60).astype(np.uint8)
    for t in range(num_frames):
        frames[t, 20:60, 10 + 6 * t : 50 + 6 * t] = (230, 40, 40)
    return frames


@pytest.fixture(scope="module")
def door(debug_checkpoint, tmp_path_factory):
    """One model load; the inputs on disk; the predictor's reference answers."""
    root = tmp_path_factory.mktemp("door")
    bundle = load_pam(debug_checkpoint)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in bundle.model.llm.parameters():
            if p.ndim == 2:  # embeddings (tied with the output layer) and projections
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    checkpoint = export_pam(bundle.model, bundle.tokenizer, root / "pam-debug-varied")
    predictor = PAMPredictor(bundle, generation=GenerationSettings.greedy(TOKENS), vision_dtype="float32")
    image = synthetic_image()
    Image.fromarray(image).save(root / "image.png")  # lossless: the CLI reads back the same pixels
    write_video_mp4(str(root / "clip.mp4"), moving_square())
    frames, indices = load_video(str(root / "clip.mp4"))  # the CLI's reader
    demo_frames, demo_indices = read_clip(str(root / "clip.mp4"))  # the demo's reader
    assert indices == demo_indices == [0, 1] and np.array_equal(frames, demo_frames)
    # the references: the predictor called directly
    image_ref = predictor.predict(image, REGIONS, tasks=list(IMAGE_TASKS))
    stream_ref = list(predictor.stream(frames, {"box": CLIP_BOX}, ends=ENDS))
    assert [(e.start_frame, e.end_frame) for e in stream_ref] == EVENTS
    # answers that tell regions and tasks apart: equal texts below are not vacuous
    texts = [r.texts[t] for r in image_ref for t in TASKS]
    assert all(texts) and len(set(texts)) == len(texts), texts
    assert all(e.caption for e in stream_ref)
    return {
        "root": root,
        "checkpoint": checkpoint,
        "bundle": bundle,
        "predictor": predictor,
        "image": image,
        "frames": frames,
        "image_ref": image_ref,
        "stream_ref": stream_ref,
    }


def run_cli(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert pam_cli(argv) == 0
    return json.loads(capsys.readouterr().out)


def region_flags(region: dict) -> list[str]:
    if "box" in region:
        return ["--box", ",".join(f"{v:g}" for v in region["box"])]
    return [a for (x, y), lab in zip(region["points"], region["labels"]) for a in ("--point", f"{x:g},{y:g},{lab}")]


def test_cli_predict(door, capsys):
    common = ["--checkpoint", str(door["checkpoint"]), "--greedy", "--max-new-tokens", str(TOKENS), "--device", "cpu"]
    tasks = [a for t in TASKS for a in ("--task", t)]
    for region, ref in zip(REGIONS, door["image_ref"]):
        out = run_cli(capsys, ["predict", str(door["root"] / "image.png"), *region_flags(region), *tasks, *common])
        assert out["texts"] == {t: ref.texts[t] for t in TASKS}
        same_mask(decode_rle(out["mask_rle"]), ref.mask)
        assert out["score"] == pytest.approx(ref.score, abs=1e-6)


def data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def test_server_app_and_demo_handlers(door):
    from fastapi.testclient import TestClient

    from pam.serve.app import create_app

    engine = Engine(door["bundle"], max_new_tokens=TOKENS)
    image, refs = door["image"], door["image_ref"]
    wire = [{"box": BOX}, {"points": POINTS, "point_labels": LABELS}]
    with TestClient(create_app(engine)) as client:
        for task in TASKS:
            body = {
                "model": "pam",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}}]}
                ],
                "regions": wire,
                "task": task,
                "max_tokens": TOKENS,
            }
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert [c["message"]["content"] for c in answer["choices"]] == [r.texts[task] for r in refs]
            for got, ref in zip(answer["regions"], refs):
                same_mask(decode_rle(got["mask"]), ref.mask)
                assert got["score"] == pytest.approx(ref.score, abs=1e-6)

    demo = DemoHandlers(engine)
    # the box typed into its field; the points clicked (x, y, label)
    for kwargs, ref in [
        ({"points": [], "box_text": "50, 40, 190, 130"}, refs[0]),
        ({"points": [[x, y, lab] for (x, y), lab in zip(POINTS, LABELS)], "box_text": ""}, refs[1]),
    ]:
        picture, *texts, info = demo.describe(image, **kwargs)
        assert texts == [ref.texts[t] for t in IMAGE_TASKS]
        region = ref.region
        drawn = overlay(
            image, ref.mask, box=region.get("box"), points=region.get("points"), labels=region.get("labels")
        )
        assert np.array_equal(np.asarray(picture), np.asarray(drawn))  # the reference mask, drawn the same way
        assert f"mask area {int(ref.mask.sum())} px" in info
    # the demo's video tab (the engine's stream): captions, and each event's last mask as drawn
    *_, (_, _, gallery) = demo.stream(str(door["root"] / "clip.mp4"), "10, 20, 50, 60", segment_length=1)
    events, frames = door["stream_ref"], door["frames"]
    assert len(gallery) == len(events)
    for (preview, caption), e in zip(gallery, events):
        assert caption == f"{e.start_frame}-{e.end_frame}: {' '.join(e.caption.split())}"
        drawn = overlay(frames[e.end_frame], e.masks[-1], caption=f"frame {e.end_frame}")
        assert np.array_equal(preview, np.asarray(drawn))


def test_evaluation_adapter(door):
    gen = PAMGenerator(door["bundle"], GenerationConfig(max_new_tokens=TOKENS, do_sample=False))
    image, refs = door["image"], door["image_ref"]
    for task in TASKS:
        assert gen.describe_regions(image, REGIONS, task=task) == [r.texts[task] for r in refs]
    assert gen.describe_events(door["frames"], {"box": CLIP_BOX}, ENDS) == [e.caption for e in door["stream_ref"]]
    # dataset samples (the quick-start benchmark's path): text and mask
    samples = [
        {
            "id": f"s{i}",
            "media_type": "image",
            "image_key": "img",
            "pixels": image,
            "prompt": {"points": None, "point_labels": None, "box": None, "mask": None, **_prompt(region)},
            "turns": [{"role": "user", "content": task_prompt("category")}, {"role": "assistant", "content": "x"}],
        }
        for i, region in enumerate(REGIONS)
    ]
    for got, ref in zip(gen.generate_samples(samples), refs):
        assert got.text == ref.texts["category"]
        same_mask(got.mask, ref.mask)


def _prompt(region: dict) -> dict:
    if "box" in region:
        return {"box": np.array(region["box"])}
    return {"points": np.array(region["points"]), "point_labels": np.array(region["labels"])}


def test_training_report(door):
    predictor = door["predictor"]
    # the training report's examples: greedy, EXAMPLE_TOKENS at most, from dataset samples
    image = door["image"]
    dataset = [
        {
            "id": f"r{i}",
            "media_type": "image",
            "image_key": "img",
            "pixels": image,
            "prompt": {"points": None, "point_labels": None, "box": None, "mask": None, **_prompt(region)},
            "turns": [{"role": "user", "content": task_prompt(task)}, {"role": "assistant", "content": "x"}],
        }
        for i, (region, task) in enumerate(zip(REGIONS, TASKS))
    ]
    examples = example_predictions(door["bundle"], dataset, n=len(dataset))
    requests = [
        RegionRequest(region=region, image=image, task=task, max_new_tokens=EXAMPLE_TOKENS)
        for region, task in zip(REGIONS, TASKS)
    ]
    refs = predictor.generate(requests)  # a per-request limit: the predictor's own is TOKENS
    assert [i for i, _, _ in examples] == [0, 1]
    for (_, _, got), ref in zip(examples, refs):
        assert got.text == ref.text and got.token_ids == ref.token_ids and len(ref.token_ids) <= EXAMPLE_TOKENS
        same_mask(got.mask, ref.mask)
        assert got.score == pytest.approx(ref.score, abs=1e-6)
    for got, ref in zip(refs, door["image_ref"]):
        same_mask(got.mask, ref.mask)


@pytest.mark.soak  # about 4 more SAM 2 tracking passes and a model load: out of the default run
def test_cli_video_stream_and_evaluation_on_the_clip(door, capsys):
    """``pam video`` / ``pam stream`` and the evaluation's clip caption against the predictor."""
    predictor, frames = door["predictor"], door["frames"]
    video_ref = predictor.predict_video(frames, {"box": CLIP_BOX})
    assert video_ref.text
    gen = PAMGenerator(door["bundle"], GenerationConfig(max_new_tokens=TOKENS, do_sample=False))
    assert gen.describe_video(frames, {"box": CLIP_BOX}) == video_ref.text
    common = ["--checkpoint", str(door["checkpoint"]), "--greedy", "--max-new-tokens", str(TOKENS), "--device", "cpu"]
    clip = str(door["root"] / "clip.mp4")
    box = ["--box", ",".join(f"{v:g}" for v in CLIP_BOX)]
    out = run_cli(capsys, ["video", clip, *box, *common])
    assert out["text"] == video_ref.text and out["llm_frames"] == video_ref.llm_frames
    assert out["score"] == pytest.approx(video_ref.score, abs=1e-6)
    out = run_cli(capsys, ["stream", clip, *box, "--boundaries", "fixed", "--window", "1", *common])
    assert [(e["start_frame"], e["end_frame"]) for e in out["events"]] == EVENTS
    assert [e["caption"] for e in out["events"]] == [e.caption for e in door["stream_ref"]]
