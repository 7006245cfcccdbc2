"""More first-hour rough edges: several regions on the command line, `pam stream` as JSON lines,
per-frame video masks, the server's RLE / model / media-type / route errors, one-line --device
errors, fast argument errors, and the decord / Gradio noise."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import pam.cli.predict as cli_predict
from pam.cli import main as pam_cli
from pam.inference.results import RegionResult, StreamEvent

from .helpers import ROOT, synthetic_image

FAST = ["--greedy", "--max-new-tokens", "3", "--device", "cpu"]


def _run(capsys, argv):
    capsys.readouterr()
    code = pam_cli(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


# ---- one model load for the CLI tests -------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(debug_bundle):
    """The session's debug model (no second load), greedy, 3 new tokens."""
    from pam.inference.generation import GenerationSettings
    from pam.inference.predictor import PAMPredictor

    return PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(3))


@pytest.fixture
def shared_predictor(predictor, monkeypatch):
    """The CLI verbs use the module's predictor instead of loading a checkpoint."""
    monkeypatch.setattr(cli_predict, "_predictor", lambda args, **kwargs: predictor)
    return predictor


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(synthetic_image()).save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A folder of 3 PNG frames (a red square moving right) and the frames."""
    rng = np.random.RandomState(0)
    frames = (rng.rand(3, 64, 96, 3) * 60).astype(np.uint8)
    for t in range(3):
        frames[t, 16:40, 8 + 6 * t : 32 + 6 * t] = (230, 40, 40)
    folder = tmp_path_factory.mktemp("clip")
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    return folder, frames


# ---- several regions on the command line ----------------------------------------------------------


def test_predict_answers_every_box(shared_predictor, image_path, tmp_path, capsys):
    argv = ["predict", str(image_path), "--checkpoint", "unused", "--task", "category", *FAST]
    boxes = [[50.0, 40.0, 190.0, 130.0], [200.0, 20.0, 280.0, 180.0]]
    code, out, err = _run(capsys, [*argv, "--box", "50,40,190,130", "--box", "200,20,280,180", "--out", str(tmp_path)])
    assert code == 0, err
    res = json.loads(out)
    assert [r["index"] for r in res["regions"]] == [0, 1]
    assert [r["region"]["box"] for r in res["regions"]] == boxes  # not only the last box
    image = np.asarray(Image.open(image_path).convert("RGB"))
    [alone] = shared_predictor.predict(image, [{"box": boxes[0]}], tasks=["category"])  # the first box, on its own
    first = res["regions"][0]
    assert np.array_equal(_decode(first["mask_rle"]), alone.mask) and first["texts"] == alone.texts
    assert [Image.open(r["overlay"]).size for r in res["regions"]] == [(300, 200)] * 2
    assert json.loads((tmp_path / "result.json").read_text())["regions"][1]["region"]["box"] == boxes[1]


def _parsed_regions(*flags: str) -> list[dict]:
    from pam.cli import build_parser

    return cli_predict._regions(build_parser().parse_args(["predict", "x.png", "--checkpoint", "c", *flags]))


def test_region_flags_group_as_documented(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    m = str(tmp_path / "m.png")
    # repeated --point flags: ONE region of several points; one of each kind: one combined region (as before)
    assert _parsed_regions("--point", "1,2", "--point", "3,4,0") == [{"points": [[1, 2], [3, 4]], "labels": [1, 0]}]
    [one] = _parsed_regions("--box", "1,2,8,9", "--point", "3,4", "--mask", m)
    assert one["box"] == [1, 2, 8, 9] and one["points"] == [[3, 4]] and one["mask"].sum() == 18
    # repeated --box / --mask: one region each; --region: one region per flag, any mix
    assert _parsed_regions("--box", "1,2,8,9", "--box", "2,3,9,9") == [{"box": [1, 2, 8, 9]}, {"box": [2, 3, 9, 9]}]
    assert [r["mask"].sum() for r in _parsed_regions("--mask", m, "--mask", m)] == [18, 18]
    first, second = _parsed_regions(
        "--region", f"box=1,2,8,9; point=3,4; point=5,6,0; mask={m}", "--region", "point=7,8"
    )
    assert first["box"] == [1, 2, 8, 9] and first["points"] == [[3, 4], [5, 6]] and first["labels"] == [1, 0]
    assert first["mask"].sum() == 18 and second == {"points": [[7, 8]], "labels": [1]}


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--box", "1,1,9,9", "--box", "2,2,8,8", "--point", "5,5"], "do not combine with other prompts"),
        (["--box", "1,1,9,9", "--region", "point=5,5"], "not both"),
        (["--region", "box=1,1,9,9;box=2,2,8,8"], "box given twice"),
        (["--region", "circle=1,2"], "is not box=x0,y0,x1,y1"),
        (["--box", "1,1,9,9", "--box", "50,40,350,130"], "region 1: "),
        (["--box", "1,1,9,9", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),  # not the default
    ],
)
def test_region_flags_that_cannot_be_honoured_are_one_line(image_path, capsys, flags, words):
    code, out, err = _run(capsys, ["predict", str(image_path), "--checkpoint", "unused", *flags])
    assert code == 2 and out == "" and words in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "words"),
    [(["--frame", "-1"], "--frame must be >= 0, got -1"), (["--max-frames", "0"], "--max-frames must be >= 1, got 0")],
)
def test_video_flags_are_named_in_their_errors(clip, capsys, flags, words):
    folder, _ = clip
    code, out, err = _run(capsys, ["stream", str(folder), "--checkpoint", "unused", "--box", "1,1,9,9", *flags])
    assert code == 2 and out == "" and err == f"pam stream: error: {words}\n"


# ---- pam video: per-frame masks; pam stream: one JSON line per event as it closes ----------------


def test_video_json_carries_a_mask_per_frame(clip, tmp_path, capsys, monkeypatch):
    from pam.inference.results import VideoPrediction

    folder, frames = clip
    asked = []

    class Tracking:  # the predictor's result as the CLI gets it; each region's masks differ
        def predict_video(self, frames_in, region, **kwargs):
            asked.append(region)
            masks = np.zeros((len(frames_in), *frames_in.shape[1:3]), bool)
            for t in range(len(frames_in)):
                masks[t, : 4 + t + 10 * len(asked), :5] = True
            return VideoPrediction("a red square", masks, list(range(len(frames_in))), [0], 0.5)

    monkeypatch.setattr(cli_predict, "_predictor", lambda args, **kwargs: Tracking())
    base = ["video", str(folder), "--checkpoint", "unused", "--box", "8,16,32,40", *FAST]
    code, out, err = _run(capsys, [*base, "--frame", "1"])
    assert code == 0, err
    res = json.loads(out)
    assert res["frame_indices"] == [m["frame"] for m in res["masks"]] == [1, 2]  # frames of the input video
    assert [_decode(m["mask_rle"]).sum() for m in res["masks"]] == [14 * 5, 15 * 5]
    assert all(m["mask_rle"]["size"] == [64, 96] for m in res["masks"])
    # several regions: one entry each, with its own masks and its own annotated video
    code, out, _ = _run(capsys, [*base, "--box", "40,8,90,60", "--out", str(tmp_path)])
    entries = json.loads(out)["regions"]
    assert (
        code == 0
        and [e["index"] for e in entries] == [0, 1]
        and [r["box"] for r in asked[1:]]
        == [
            [8.0, 16.0, 32.0, 40.0],
            [40.0, 8.0, 90.0, 60.0],
        ]
    )
    assert [[_decode(m["mask_rle"]).sum() for m in e["masks"]] for e in entries] == [[120, 125, 130], [170, 175, 180]]
    assert [Path(e["annotated"]).name for e in entries] == ["annotated_0.gif", "annotated_1.gif"]


class _RecordingStdout(io.StringIO):
    def __init__(self, order: list):
        super().__init__()
        self.order = order

    def write(self, text):
        self.order.extend(("line", line) for line in text.splitlines() if line.strip())
        return super().write(text)

    def flush(self):
        self.order.append(("flush", None))


def test_stream_prints_each_event_before_the_next_is_computed(clip, tmp_path, monkeypatch):
    folder, frames = clip
    order: list = []

    class Streaming:
        def stream(self, frames_in, region, **kwargs):
            for k, (start, end) in enumerate([(0, 1), (2, 2)]):
                order.append(("compute", k))
                masks = np.zeros((end - start + 1, *frames_in.shape[1:3]), bool)
                masks[:, 16:40, 8:32] = True
                yield StreamEvent(start, end, f"event {k}", masks)

    monkeypatch.setattr(cli_predict, "_predictor", lambda args, **kwargs: Streaming())
    monkeypatch.setattr(sys, "stdout", _RecordingStdout(order))
    argv = ["stream", str(folder), "--checkpoint", "unused", "--box", "8,16,32,40", "--out", str(tmp_path), *FAST]
    assert pam_cli(argv) == 0
    kinds = [kind for kind, _ in order]
    # compute 0, its line, a flush, then compute 1: line k is out before event k+1 is computed
    assert kinds == ["compute", "line", "flush", "compute", "line", "flush"]
    lines = [json.loads(text) for kind, text in order if kind == "line"]
    assert [(e["event"], e["start_frame"], e["end_frame"], e["caption"]) for e in lines] == [
        (0, 0, 1, "event 0"),
        (1, 2, 2, "event 1"),
    ]
    assert [m["frame"] for m in lines[0]["masks"]] == [0, 1] and _decode(lines[1]["masks"][0]["mask_rle"]).sum() == 576
    saved = json.loads((tmp_path / "result.json").read_text())  # the final file is still written
    assert saved["events"] == lines and saved["annotated"].endswith("annotated.gif")
    # two regions: each streamed in turn, every line naming its region
    order.clear()
    assert pam_cli([*argv, "--box", "40,8,90,60"]) == 0
    tagged = [json.loads(text) for kind, text in order if kind == "line"]
    assert [(e["region"], e["event"]) for e in tagged] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert [[e["event"] for e in r["events"]] for r in saved["regions"]] == [[0, 1], [0, 1]]


# ---- --device on a machine without the GPU; argument errors before torch -------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "x.png", "--checkpoint", "c", "--box", "1,1,5,5", "--device", "cuda"],
        ["video", "x.mp4", "--checkpoint", "c", "--box", "1,1,5,5", "--device", "cuda"],
        ["stream", "x.mp4", "--checkpoint", "c", "--box", "1,1,5,5", "--device", "cuda"],
        ["eval", "lvis", "--checkpoint", "c", "--data", "d", "--out", "o", "--device", "cuda"],
        ["eval", "lvis", "device=cuda"],
        ["serve", "--device", "cuda"],
        ["demo", "--device", "cuda:1"],
    ],
)
def test_device_cuda_without_a_gpu_is_one_line_naming_the_flag(capsys, argv):
    code, out, err = _run(capsys, argv)
    flag = "device=cuda" if "device=cuda" in argv else f"--device {argv[-1]}"
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"pam {argv[0]}: error: {flag}: this machine has no CUDA GPU")


def test_argument_errors_come_before_torch_is_imported():
    verbs = [
        ["predict", "--bogus"],
        ["predict"],
        ["video", "--bogus"],
        ["stream", "x.mp4"],
        ["eval", "--bogus"],
        ["score", "--bogus"],
        ["serve", "--bogus"],
        ["demo", "--share", "--bogus"],
        ["eval-table"],
        ["convert-upstream"],
        ["train", "--bogus"],  # Hydra's own parser
        ["data"],
        ["data", "convert", "--bogus"],  # data_pipeline's parser
        ["make-data", "--bogus"],
        ["collect-sweep"],
    ]
    script = (
        "import sys\nfrom pam.cli import main\n"
        f"for argv in {verbs!r}:\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 2, (argv, e.code)\n"
        "    else:\n        raise AssertionError(argv)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sam2', 'gradio', 'fastapi') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    assert done.stderr.count("error:") == len(verbs)  # each a usage line, none a traceback


# ---- server: compressed RLE, model name, JSON only, OpenAI-shaped 404/405 ------------------------


class _EchoEngine:
    """Just enough of ``Engine`` for the app: each region's answer is its own mask."""

    model_name = "pam-test"
    max_new_tokens = 4
    max_length = 4096
    random_weights = False
    image_placeholder = "<image>"

    def prompt_length(self, user_prompt: str) -> int:
        return 10

    def describe(self, requests, sampling=None):
        return [
            RegionResult("ok", np.asarray(r.region.mask if r.region.mask is not None else 0), 0.5, [1])
            for r in requests
        ]


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from pam.serve.app import create_app

    with TestClient(create_app(_EchoEngine(), max_wait_ms=0)) as c:
        yield c


def _png(h: int = 24, w: int = 32) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _body(mask=None, model="pam-test", url=None) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url or _png()}}, {"type": "text", "text": "category"}]
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if mask is not None:
        body["regions"] = [{"mask": mask}]
    return body


def _coco_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def _is_openai_error(r, status: int, code=None, param=None) -> dict:
    err = r.json()["error"]
    assert r.status_code == status and set(err) == {"message", "type", "param", "code"}, r.text
    assert err["code"] == code and err["param"] == param, err
    assert " object at 0x" not in err["message"], err
    return err


def test_compressed_rle_is_decoded_and_checked(client):
    mask = np.zeros((24, 32), bool)
    mask[4:12, 6:20] = True
    ok = client.post("/v1/chat/completions", json=_body(_coco_rle(mask)))
    assert ok.status_code == 200, ok.text
    assert np.array_equal(_decode(ok.json()["regions"][0]["mask"]), mask)
    small = _coco_rle(mask[:12, :16])  # a real RLE of another size, relabelled
    bad = [
        ({"size": [24, 32], "counts": "zz"}, "is not a compressed-RLE character"),  # junk
        ({**small, "size": [24, 32]}, "the runs cover 192 pixels, but the mask has 24x32 = 768"),
        ({"size": [24, 32], "counts": _coco_rle(mask)["counts"] + "1"}, "the runs cover"),
        ({"size": [24, 32], "counts": [700, 100]}, "the runs cover 800 pixels"),
    ]
    for rle, words in bad:
        err = _is_openai_error(
            client.post("/v1/chat/completions", json=_body(rle)), 400, param="regions[0].mask.counts"
        )
        assert words in err["message"], err
    err = _is_openai_error(
        client.post("/v1/chat/completions", json=_body({**_coco_rle(mask), "size": [32, 24]})),
        400,
        param="regions[0].mask",
    )
    assert "does not match the image size [24, 32]" in err["message"]


def test_unknown_model_non_json_bodies_and_routes_get_openai_errors(client):
    err = _is_openai_error(client.post("/v1/chat/completions", json=_body(model="gpt-4o")), 404, code="model_not_found")
    assert err["type"] == "invalid_request_error" and "`gpt-4o`" in err["message"] and "pam-test" in err["message"]
    for name in ("pam-test", "pam"):  # the served name and the alias are both fine
        assert client.post("/v1/chat/completions", json=_body(model=name)).status_code != 404
    text = json.dumps(_body())
    r = client.post("/v1/chat/completions", content=text, headers={"content-type": "text/plain"})
    assert "application/json" in _is_openai_error(r, 415, code="unsupported_media_type")["message"]
    _is_openai_error(client.get("/v1/nothing"), 404, code="not_found")
    err = _is_openai_error(client.get("/v1/chat/completions"), 405, code="method_not_allowed")
    assert "POST" in err["message"]
    not_an_image = "data:image/png;base64," + base64.b64encode(b"plain text, not pixels").decode()
    err = _is_openai_error(
        client.post("/v1/chat/completions", json=_body(url=not_an_image)),
        400,
        param=err["param"] or "messages[0].content[0].image_url",
    )
    assert "not a PNG or JPEG image" in err["message"]


def test_the_stock_openai_client_reads_our_errors(client):
    openai = pytest.importorskip("openai")
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=_body()["messages"])
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="pam",
            messages=_body()["messages"],
            extra_body={"regions": [{"mask": {"size": [24, 32], "counts": "zz"}}]},
        )
    assert info.value.param == "regions[0].mask.counts"


# ---- noise: decord's FFmpeg lines, Gradio's share hint and tracebacks ------------------------------


def test_a_corrupt_video_is_one_clean_error_without_decoder_chatter(tmp_path, capfd):
    from pam.data.video import write_video_mp4
    from pam.inference.regions import ImageInputError
    from pam.inference.video_input import load_video

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all\n" * 10)  # decord's FFmpeg: "moov atom not found", then its ERROR line
    good = tmp_path / "good.mp4"
    write_video_mp4(str(good), np.zeros((4, 32, 32, 3), np.uint8))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a header whose stream is gone
    capfd.readouterr()
    with pytest.raises(ImageInputError, match="corrupt_video.*Invalid data found"):
        load_video(junk)
    with pytest.raises(ImageInputError, match="no video stream in the file"):  # not "tuple index out of range"
        load_video(cut)
    assert capfd.readouterr().err == ""


def test_demo_bad_input_is_a_ui_error_with_one_log_line(caplog):
    gr = pytest.importorskip("gradio")
    from pam.serve.demo import DemoHandlers, ui_error

    handlers = DemoHandlers(types.SimpleNamespace())
    with pytest.raises(Exception) as info:
        handlers.describe(np.zeros((8, 8, 3), np.uint8), [], "1, 2, x")
    caplog.set_level(logging.WARNING)
    shown = ui_error(gr, "describe", info.value)
    assert isinstance(shown, gr.Error) and shown.print_exception is False  # Gradio prints no traceback
    assert "box must be four numbers" in shown.message
    assert [r.getMessage() for r in caplog.records] == [f"demo describe: bad input: {shown.message}"]


def test_demo_share_flag_and_no_share_hint(monkeypatch, capsys):
    gr = pytest.importorskip("gradio")
    from pam.serve import demo as demo_module

    calls = []

    def fake_launch(self, **kwargs):
        calls.append(kwargs)
        self.local_url = "http://127.0.0.1:7860/"

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    monkeypatch.setattr(demo_module, "build_demo", lambda engine: gr.Blocks(analytics_enabled=False))
    for share in (False, True):
        demo_module.launch_demo(types.SimpleNamespace(), port=7860, block=True, share=share)
    assert [(c["share"], c["quiet"]) for c in calls] == [
        (False, True),
        (True, False),
    ]  # Gradio's hint only when sharing
    assert capsys.readouterr().out == "pam demo: serving on http://127.0.0.1:7860/ (Ctrl-C to stop)\n"
    from pam.cli import build_parser

    assert build_parser().parse_args(["demo", "--share"]).share is True
