"""Evaluation through the model: the quick-start via `pam eval`/`pam score`/`pam eval-table`, resume
after a crash, 2 gloo processes = 1 process, image and video benchmarks on the debug PAM."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pam.cli import main as pam_cli
from pam.eval import generate_predictions, get_benchmark, read_predictions, write_predictions
from pam.eval.generation import PAMGenerator, item_seed
from pam.eval.results import checkpoint_hash
from pam.processing.collator import PAMCollator

from .test_eval_readers import write_activitynet, write_ferret, write_osprey

ROOT = Path(__file__).resolve().parents[1]
SAMPLED = [
    "--set",
    "generation.do_sample=true",
    "--set",
    "generation.max_new_tokens=5",
    "--set",
    "generation.batch_size=1",
    "--no-progress",
]
SAMPLED_OVERRIDES = {"generation": {"do_sample": True, "max_new_tokens": 5, "batch_size": 1}}
CATEGORY = ["--set", "tasks=[category]"]  # 3 items, no caption metrics (no Java): for the run mechanics


@pytest.fixture(scope="module")
def checkpoint(debug_checkpoint):
    return debug_checkpoint


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory):
    from pam.data.synthetic import SyntheticConfig, generate_quickstart

    root = tmp_path_factory.mktemp("eval") / "data"
    generate_quickstart(
        str(root),
        SyntheticConfig(num_train=1, num_val=1, num_test=3, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    return root


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }


def test_quickstart_eval_score_and_table(tmp_path, checkpoint, quick_data, debug_bundle, capsys):
    out = tmp_path / "run"
    assert (
        pam_cli(
            [
                "eval",
                "quickstart",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(quick_data),
                "--out",
                str(out),
                "--set",
                "generation.max_new_tokens=6",
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    assert result["model"]["sha256"] == checkpoint_hash(checkpoint)["sha256"]
    assert result["model"]["weight_files"] == ["model.safetensors", "sam2.safetensors"]
    assert result["settings"]["generation"]["max_new_tokens"] == 6 and result["num_items"] == 6
    rows = read_predictions(out / "predictions.jsonl")

    # the predictions are the model's own generate() output on the same samples (batched as configured)
    bench = get_benchmark("quickstart")
    items = bench.read_items(quick_data)
    assert [r["id"] for r in rows] == [it["id"] for it in items]
    samples = [bench.dataset[i] for i in range(len(items))]
    for s in samples:
        s["turns"] = s["turns"][:-1]
    proc = debug_bundle.processor
    ref = debug_bundle.model.generate(
        **PAMCollator(proc, for_generation=True)(samples),
        max_new_tokens=6,
        eos_token_id=proc.eos_token_ids,
        pad_token_id=proc.tokenizer.pad_token_id,
    )
    assert [r["prediction"] for r in rows] == [proc.decode(ids, 6)[0] for ids in ref.sequences.tolist()]

    capsys.readouterr()
    assert pam_cli(["score", "quickstart", str(out / "predictions.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(result["scores"])

    other = tmp_path / "lvis_run"
    other.mkdir()
    (other / "results.json").write_text(
        json.dumps(
            {
                "benchmark": "lvis",
                "scores": {"semantic_similarity": 80.123, "semantic_iou": 70.0, "num_items": 3},
                "model": result["model"],
            }
        )
    )
    assert pam_cli(["eval-table", str(out), str(other), "--out", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0] == "| benchmark | metric | PAM-3B (paper) | run | lvis_run |"  # a column per run folder
    assert (
        table[2] == "| lvis | semantic_similarity | 88.6 |  | 80.12 |"
        and table[3] == "| lvis | semantic_iou | 78.3 |  | 70 |"
    )
    assert f"| quickstart | category_accuracy |  | {result['scores']['category_accuracy']:.4g} |  |" in table
    assert pam_cli(["eval-table", "--by", "checkpoint", str(out), str(other), "--out", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text().splitlines()
    label = f"{checkpoint.name} ({result['model']['sha256'][:8]})"  # the checkpoint folder's name
    assert table[0] == f"| benchmark | metric | PAM-3B (paper) | {label} |"
    assert table[2] == "| lvis | semantic_similarity | 88.6 | 80.12 |"
    assert pam_cli(["eval", "quickstart", "--checkpoint", str(checkpoint)]) == 2  # usage error, one line


class FakeGenerator:
    """Stands in for the model where only the run mechanics matter: answers ``pred <id>``."""

    def __init__(self, delay=0.0):
        self.delay = delay

    def seed(self, item_id):
        pass

    def generate_samples(self, samples):
        import time

        import numpy as np

        from pam.inference.results import RegionResult

        time.sleep(self.delay)
        # an empty mask the size of the sample's media: (H, W) for an image, (T, H, W) for a clip
        return [
            RegionResult(
                text=f"pred {s['id']}", mask=np.zeros(np.shape(s["pixels"])[:-1], bool), score=0.5, token_ids=[]
            )
            for s in samples
        ]


KILLED_RUN = (
    inspect.getsource(FakeGenerator)
    + """
import sys
from pam.eval import generate_predictions, get_benchmark
bench = get_benchmark("quickstart", overrides={"generation": {"batch_size": 1}})
generate_predictions(bench, bench.read_items(sys.argv[1]), FakeGenerator(delay=0.3), sys.argv[2], progress=False)
"""
)


def test_sigkill_mid_run_then_resume(tmp_path, quick_data):
    import time

    pred = tmp_path / "predictions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(quick_data), str(pred)],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if pred.is_file() and pred.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.kill()  # SIGKILL
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 2 <= pred.read_text().count("\n") < 6
    bench = get_benchmark("quickstart", overrides={"generation": {"batch_size": 1}})
    items = bench.read_items(quick_data)
    seen = []
    generate_predictions(bench, items, FakeGenerator(), pred, progress=False, on_written=seen.append)
    rows = read_predictions(pred)
    assert [r["id"] for r in rows] == [it["id"] for it in items]
    assert [r["prediction"] for r in rows] == [f"pred {it['id']}" for it in items]
    assert 0 < len(seen) <= 4


def test_a_crashed_run_resumes_without_duplicates(tmp_path, quick_data, monkeypatch):
    bench = get_benchmark("quickstart", overrides={"generation": {"batch_size": 2}})
    items = bench.read_items(quick_data)
    calls = {"n": 0}
    original = bench.predict

    def crash_on_second_batch(chunk, generator):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected crash")
        return original(chunk, generator)

    monkeypatch.setattr(bench, "predict", crash_on_second_batch)
    path = tmp_path / "predictions.jsonl"
    with pytest.raises(RuntimeError, match="injected crash"):
        generate_predictions(bench, items, FakeGenerator(), path, progress=False)
    assert len(path.read_text().splitlines()) == 2
    with path.open("a") as f:
        f.write('{"id": "synthetic/te')  # and a kill mid-line on top
    monkeypatch.setattr(bench, "predict", original)
    seen = []
    generate_predictions(bench, items, FakeGenerator(), path, progress=False, on_written=seen.append)
    assert [r["id"] for r in seen] == [it["id"] for it in items[2:]]  # only the missing items
    rows = read_predictions(path)
    assert [r["id"] for r in rows] == [it["id"] for it in items]
    assert [r["prediction"] for r in rows] == [f"pred {it['id']}" for it in items]


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tmp_path, checkpoint, quick_data, debug_bundle):
    two = tmp_path / "two"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "pam.cli",
        "eval",
        "quickstart",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(quick_data),
        "--out",
        str(two),
        "--device",
        "cpu",
        *SAMPLED,
        *CATEGORY,
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in two.iterdir()) == [
        "predictions.jsonl",
        "results.json",
        "results.md",
    ]  # shards merged away
    # one process, in this one, with the weights the checkpoint was exported from
    bench = get_benchmark("quickstart", overrides={**SAMPLED_OVERRIDES, "tasks": ["category"]})
    items = bench.read_items(quick_data)
    one = generate_predictions(
        bench, items, PAMGenerator(debug_bundle, bench.config.generation), tmp_path / "one.jsonl", progress=False
    )
    rows_two, rows_one = read_predictions(two / "predictions.jsonl"), read_predictions(one)
    assert len(rows_one) == 3 and rows_two == rows_one
    assert all(r["prediction"] for r in rows_one)  # sampled text, so equality is not vacuous
    scores = json.loads((two / "results.json").read_text())["scores"]
    assert scores == pytest.approx(bench.score(rows_one, None))


def test_image_benchmarks_generate_through_the_predictor(tmp_path, debug_bundle):
    from pam.eval.runner import evaluate
    from pam.inference.generation import GenerationSettings
    from pam.inference.predictor import PAMPredictor
    from pam.inference.request import RegionRequest

    data = write_osprey(tmp_path / "lvis")
    result = evaluate(
        "lvis",
        checkpoint=None,
        data=data,
        out_dir=tmp_path / "out",
        overrides=SAMPLED_OVERRIDES,
        bundle=debug_bundle,
        progress=False,
    )
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    bench = get_benchmark("lvis")
    items = bench.read_items(data)
    # item 2's prediction = the predictor on its image and mask, with the item's seed and settings
    from pam.eval.benchmarks._common import item_region
    from pam.eval.media import load_image

    image = load_image(items[2]["root"], items[2]["image"])
    torch.manual_seed(item_seed(0, items[2]["id"]))
    settings = GenerationSettings(do_sample=True, temperature=1.0, top_p=1.0, num_beams=1, max_new_tokens=5, seed=None)
    predictor = PAMPredictor(debug_bundle, generation=settings)
    region = item_region(items[2], True, *image.shape[:2])
    [answer] = predictor.generate([RegionRequest(region=region, image=image, task="category")], strict=False)
    expected = answer.text
    assert rows[2]["prediction"] == expected
    assert set(result["scores"]) == {"semantic_similarity", "semantic_iou", "num_items"} and result["model"] == {
        "checkpoint": None
    }

    ferret = get_benchmark("ferret", overrides=SAMPLED_OVERRIDES)
    f_items = ferret.read_items(write_ferret(tmp_path / "ferret"))
    rows = ferret.predict(f_items[:1], PAMGenerator(debug_bundle, ferret.config.generation))
    assert rows[0]["id"] == 0 and isinstance(rows[0]["prediction"], str)


def test_video_benchmarks_stream_with_history(tmp_path, debug_bundle, monkeypatch):
    bench = get_benchmark(
        "activitynet_stream", overrides={"generation": {"do_sample": True, "max_new_tokens": 4, "track_frames": 0}}
    )
    items = bench.read_items(write_activitynet(tmp_path))
    gen = PAMGenerator(debug_bundle, bench.config.generation)
    sam2, proc = debug_bundle.model.sam2, gen.predictor.processor
    tracked, prompts = [], []
    iter_track, tokenize = sam2.iter_track, proc.tokenize
    monkeypatch.setattr(
        sam2, "iter_track", lambda frames, prompt: tracked.append(frames.shape[0]) or iter_track(frames, prompt)
    )
    monkeypatch.setattr(
        proc,
        "tokenize",
        lambda turns, **k: prompts.append((turns[0]["content"], k["num_frames"])) or tokenize(turns, **k),
    )
    (row,) = bench.predict(items[:1], gen)
    assert [e["event_id"] for e in row["events"]] == [1, 2]
    # one SAM 2 state through event 1's 3 frames and event 2's 2; each event captioned from its own
    # frames (the debug model's LLM sees up to 4), the second with the first's caption
    assert tracked == [5]
    assert [n for _, n in prompts] == [3, 2]
    assert prompts[0][0].endswith("Previous caption: None")
    assert prompts[1][0].split("Previous caption: ")[1] == (row["events"][0]["pred"] or "None")


def test_trainer_evaluation_goes_through_the_quickstart_benchmark(tmp_path, quick_data, debug_bundle, monkeypatch):
    from pam.data.datasets import load_region_dataset
    from pam.eval import evaluate_dataset

    seen = []  # the max_new_tokens each model call is asked for
    original = debug_bundle.model.generate
    monkeypatch.setattr(
        debug_bundle.model, "generate", lambda **kw: seen.append(kw["max_new_tokens"]) or original(**kw)
    )
    dataset = load_region_dataset(str(quick_data / "test.jsonl"), tasks=["category"], languages=["en"], task_mode="all")
    (tmp_path / "run").mkdir()
    write_predictions(
        tmp_path / "run" / "predictions.jsonl",
        [{"id": dataset.sample_id(0), "prediction": "stale", "task": "category", "reference": "x"}],
    )
    scores = evaluate_dataset(
        debug_bundle, dataset, tmp_path / "run", max_samples=1
    )  # another model's file is not resumed
    assert seen and set(seen) == {128}  # the quickstart config's max_new_tokens, not a hard-coded 48
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert [r["id"] for r in rows] == [dataset.sample_id(0)] and rows[0]["prediction"] != "stale"
    assert scores == get_benchmark("quickstart").score(rows, None)

    scores = evaluate_dataset(
        debug_bundle, dataset, tmp_path / "end", overrides={"generation": {"max_new_tokens": 4}}, max_samples=1
    )
    result = json.loads((tmp_path / "end" / "results.json").read_text())
    assert result["scores"] == scores and result["settings"]["generation"]["max_new_tokens"] == 4
