"""`pam predict`, `pam video` (and --stream), `pam convert-upstream` on a saved debug checkpoint and
a tiny released-format folder; released-folder SAM 2 precedence."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from pam.api import load_released_pam
from pam.checkpoints.io import save_tensors
from pam.checkpoints.sam2 import save_sam2_checkpoint
from pam.cli import main as pam_cli
from pam.data.video import write_video_mp4
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.modeling.sam2_encoder import FrozenSAM2

from .helpers import ROOT, debug_config, synthetic_image

FAST = ["--greedy", "--max-new-tokens", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(debug_checkpoint):
    return debug_checkpoint


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(synthetic_image()).save(path)
    return path


def _run(capsys, argv):
    capsys.readouterr()
    code = pam_cli(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_writes_json_and_overlay(checkpoint, image_path, tmp_path, capsys):
    code, out, _ = _run(
        capsys,
        [
            "predict",
            str(image_path),
            "--checkpoint",
            str(checkpoint),
            "--box",
            "50,40,190,130",
            "--task",
            "category",
            "--task",
            "short_caption",
            "--out",
            str(tmp_path / "o"),
            *FAST,
        ],
    )
    assert code == 0
    res = json.loads(out)
    assert set(res["texts"]) == {"category", "short_caption"} and res["mask_rle"]["size"] == [200, 300]
    assert res["region"] == {"box": [50.0, 40.0, 190.0, 130.0]}
    with Image.open(tmp_path / "o" / "overlay.png") as im:
        assert im.size == (300, 200) and im.mode == "RGB"
    assert json.loads((tmp_path / "o" / "result.json").read_text())["score"] == res["score"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--box", "1,2"], "--box '1,2': expected 4 values, got 2"),
        (["--box", "50,40,350,130"], "outside the 300x200 image"),
        (["--point", "10,x"], "expected comma-separated numbers"),
        ([], "give a region"),
        (
            ["--box", "1,1,5,5", "--task", "category", "--language", "en", "--checkpoint", "/nonexistent"],
            "no such checkpoint folder",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(checkpoint, image_path, capsys, args, message):
    argv = ["predict", str(image_path), "--checkpoint", str(checkpoint), *args]
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_video_and_stream_write_json_and_animation(checkpoint, tmp_path, capsys):
    rng = np.random.RandomState(0)
    frames = (rng.rand(3, 64, 96, 3) * 60).astype(np.uint8)
    for t in range(3):
        frames[t, 16:40, 8 + 6 * t : 32 + 6 * t] = (230, 40, 40)
    video = tmp_path / "clip.mp4"
    write_video_mp4(str(video), frames)
    code, out, _ = _run(
        capsys,
        [
            "video",
            str(video),
            "--checkpoint",
            str(checkpoint),
            "--box",
            "8,16,32,40",
            "--stream",
            "--boundaries",
            "fixed",
            "--window",
            "2",
            "--out",
            str(tmp_path / "s"),
            *FAST,
        ],
    )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]  # one JSON line per event, as it closes
    assert [(e["start_frame"], e["end_frame"]) for e in events] == [(0, 1), (2, 2)]
    with Image.open(tmp_path / "s" / "annotated.gif") as im:
        assert im.n_frames == 3 and im.size == (96, 64)
    # `pam stream` is `pam video --stream`; a bad boundary rule is a usage error
    code, out_stream, _ = _run(
        capsys,
        [
            "stream",
            str(video),
            "--checkpoint",
            str(checkpoint),
            "--box",
            "8,16,32,40",
            "--boundaries",
            "fixed",
            "--window",
            "2",
            *FAST,
        ],
    )
    assert code == 0 and [
        (e["start_frame"], e["end_frame"], e["caption"]) for e in map(json.loads, out_stream.splitlines())
    ] == [(e["start_frame"], e["end_frame"], e["caption"]) for e in events]
    code, _, err = _run(
        capsys, ["stream", str(video), "--checkpoint", str(checkpoint), "--box", "8,16,32,40", "--threshold", "0"]
    )
    assert code == 2 and "threshold must be > 0" in err and "Traceback" not in err
    code, out, _ = _run(
        capsys,
        [
            "video",
            str(video),
            "--checkpoint",
            str(checkpoint),
            "--box",
            "8,16,32,40",
            "--frame",
            "1",
            "--max-frames",
            "2",
            "--format",
            "mp4",
            "--out",
            str(tmp_path / "v"),
            *FAST,
        ],
    )
    assert code == 0
    res = json.loads(out)
    assert res["frame_indices"] == [1, 2] and isinstance(res["text"], str)
    from pam.data.video import count_video_frames

    assert count_video_frames(str(tmp_path / "v" / "annotated.mp4")) == 2
    code, _, err = _run(
        capsys, ["video", str(video), "--checkpoint", str(checkpoint), "--box", "8,16,32,40", "--frame", "7"]
    )
    assert code == 2 and "frame_index 7 is outside the video's 3 frames" in err


def _write_released_folder(bundle, folder):
    """The debug model as a released LLaVA-style folder (names from upstream's module layout)."""
    rename = {
        "semantic_tokens.weight": "sem_tokens.weight",
        "frame_proj.weight": "proj.weight",
        "frame_proj.bias": "proj.bias",
    }
    out = {}
    for k, v in bundle.model.state_dict().items():
        head, _, rest = k.partition(".")
        if head == "perceiver":
            out[f"model.vision_resampler.{rename.get(rest, rest)}"] = v
        elif head in ("image_projector", "semantic_projector"):
            out[f"model.{'mm_projector_img' if head == 'image_projector' else 'mm_projector_semT'}.{rest}"] = v
        elif head == "llm":
            out["lm_head.weight" if rest == "lm_head.weight" else "model." + rest[len("model.") :]] = v
        else:
            out[f"model.{k}"] = v
    for k, v in bundle.model.sam2.model.state_dict().items():
        out[f"model.vision_tower.sam2_model_predictor.{k}"] = v
    folder.mkdir(parents=True)
    save_tensors(out, folder / "model.safetensors")
    hf = bundle.model.llm.config.to_dict()
    hf.update(model_type="llava_qwen", mm_vision_tower="sam2", architectures=["LlavaQwenForCausalLM"])
    (folder / "config.json").write_text(json.dumps(hf))
    (folder / "generation_config.json").write_text(
        json.dumps({"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20})
    )
    bundle.tokenizer.save_pretrained(folder)
    return folder


def test_released_folder_converts_and_predicts(debug_bundle, tmp_path, capsys, caplog):
    src = _write_released_folder(debug_bundle, tmp_path / "PAM-debug")
    base = ROOT / "configs" / "model" / "debug.yaml"  # a real release uses the paper's settings, the default
    code, out, _ = _run(
        capsys,
        ["convert-upstream", str(src), str(tmp_path / "converted"), "--dtype", "float32", "--base-config", str(base)],
    )
    assert code == 0 and "generation_config.json" in json.loads(out)["files"]
    converted = PAMPredictor.from_pretrained(
        tmp_path / "converted", device="cpu", greedy=True, generation={"max_new_tokens": 3}
    )
    from pam.inference.generation import resolve_generation

    assert resolve_generation(tmp_path / "converted").model_kwargs() == {
        "do_sample": True,
        "num_beams": 1,
        "temperature": 0.1,
        "top_p": 0.8,
        "top_k": 20,
    }
    ref = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(3))
    regions = [{"box": [50, 40, 190, 130]}]
    a = converted.predict(synthetic_image(), regions, tasks=["category"])[0]
    b = ref.predict(synthetic_image(), regions, tasks=["category"])[0]
    assert a.texts == b.texts and np.array_equal(a.mask, b.mask) and a.score == pytest.approx(b.score, abs=1e-6)
    # the released folder directly; SAM 2 precedence: its vision tower wins over sam2_checkpoint, logged
    torch.manual_seed(1)
    other = FrozenSAM2.from_config(debug_config().sam2)
    save_sam2_checkpoint(other.model, tmp_path / "other.pt")
    with caplog.at_level(logging.INFO, logger="pam.api"):
        direct = PAMPredictor.from_pretrained(
            src,
            device="cpu",
            greedy=True,
            generation={"max_new_tokens": 3},
            base_config=base,
            sam2_checkpoint=str(tmp_path / "other.pt"),
        )
    assert "takes precedence over sam2_checkpoint" in caplog.text
    assert direct.bundle.model.llm_dtype == torch.bfloat16  # released default
    assert np.array_equal(direct.predict(synthetic_image(), regions, tasks=["category"])[0].mask, b.mask)
    key = "sam_mask_decoder.iou_token.weight"
    ckpt_first = load_released_pam(
        src, sam2_checkpoint=str(tmp_path / "other.pt"), dtype="float32", sam2_weights="checkpoint", base=debug_config()
    )
    assert torch.equal(ckpt_first.model.sam2.model.state_dict()[key], other.model.state_dict()[key])
    assert not torch.equal(other.model.state_dict()[key], debug_bundle.model.sam2.model.state_dict()[key])


def test_model_yaml_read_without_hydra_equals_hydra_composition():
    from pam.api import read_model_config

    from .helpers import debug_config

    assert read_model_config(ROOT / "configs" / "model" / "debug.yaml").to_dict() == debug_config().to_dict()
