"""The Gradio demo end to end in a real headless Chromium (Debian's chromium + chromedriver, Selenium).

By default on a random debug model (the page shows what the handlers compute). The `soak` tests
serve the model a finished quick-start trained (``$PAM_QUICKSTART_RUN``, or a fresh run of about 5
minutes) and check what a new user sees: the image tab's mask outlines the prompted shape and
names its category; the video tab's automatic events split where the shape's motion changes and
their captions name its colour and category. Screenshots go to the test's tmp folder, or to
``$PAM_SCREENSHOTS`` when set."""
# ruff: noqa: E402  (imports after the importorskip / skip checks)

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "Chromium is missing: apt-get install -y chromium chromium-driver (.ci/run does this)", allow_module_level=True
    )
pytest.importorskip("gradio", reason="the serve extra is not installed (pip install -e '.[serve]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx")

from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pam.inference.request import RegionRequest
from pam.serve.demo import DemoHandlers, launch_demo
from pam.serve.engine import Engine
from pam.serve.server import bind_socket

from .helpers import synthetic_image
from .test_serve import region_sensitive_bundle

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BOX = "50, 40, 190, 130"


@pytest.fixture(scope="module")
def engine():
    return Engine(region_sensitive_bundle(), max_new_tokens=6, model_name="pam-test", random_weights=True)


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1400"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _serve(engine):
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    demo = launch_demo(engine, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture
def demo_url(engine):
    yield from _serve(engine)


def _screenshot(browser, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("PAM_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / name
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    return shot


def _value(driver, selector: str) -> str:
    return driver.execute_script(f"const e = document.querySelector('{selector}'); return e ? e.value : '';") or ""


def _img_src(driver, selector: str) -> str:
    return driver.execute_script(f"const e = document.querySelector('{selector} img'); return e ? e.src : '';") or ""


def _fetch_png(src: str) -> np.ndarray:
    if src.startswith("data:"):
        import base64

        raw = base64.b64decode(src.split(",", 1)[1])
    else:
        raw = httpx.get(src, timeout=30).content
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def test_demo_box_on_generated_image_in_headless_chromium(browser, demo_url, engine, tmp_path):
    image = synthetic_image()
    path = tmp_path / "input.png"
    Image.fromarray(image).save(path)
    wait = WebDriverWait(browser, 90, poll_frequency=0.2)

    browser.get(demo_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-image input[type=file]"))
    assert "RANDOM weights" in browser.find_element(By.ID, "pam-banner").text
    browser.find_element(By.CSS_SELECTOR, "#pam-image input[type=file]").send_keys(str(path))
    wait.until(lambda d: _img_src(d, "#pam-image"))
    uploaded = _img_src(browser, "#pam-image")
    box = browser.find_element(By.CSS_SELECTOR, "#pam-box textarea, #pam-box input")
    box.send_keys(BOX)
    # the box is drawn on the image once the upload has reached the server's state
    wait.until(lambda d: _img_src(d, "#pam-image") not in ("", uploaded))
    browser.find_element(By.CSS_SELECTOR, "#pam-describe").click()
    wait.until(lambda d: _img_src(d, "#pam-overlay") and _value(d, "#pam-detailed_caption textarea"))
    time.sleep(0.5)  # let the last outputs render before the screenshot
    _screenshot(browser, tmp_path, "demo_image_tab.png")

    # what the page shows is what the demo's handler computes for the same image and box
    expected = DemoHandlers(engine).describe(image, [], BOX)
    shown = _fetch_png(_img_src(browser, "#pam-overlay"))
    assert shown.shape == image.shape
    assert np.array_equal(shown, np.asarray(expected[0]))
    texts = [
        _value(browser, f"#pam-{task} textarea")
        for task in ("category", "explain", "short_caption", "detailed_caption")
    ]
    assert texts == list(expected[1:5]) and all(texts)
    assert "mask score" in browser.find_element(By.ID, "pam-info").text

    # a click on the image adds a positive point: the prompt preview gets a green dot there
    before = _img_src(browser, "#pam-image")
    img = browser.find_element(By.CSS_SELECTOR, "#pam-image img")
    ActionChains(browser).move_to_element(img).click().perform()  # the centre: pixel (150, 100)
    wait.until(lambda d: _img_src(d, "#pam-image") not in ("", before))
    drawn = _fetch_png(_img_src(browser, "#pam-image"))
    assert tuple(drawn[100, 150]) == (0, 255, 0) and tuple(image[100, 150]) != (0, 255, 0)


def test_demo_video_tab_streams_events_in_headless_chromium(browser, demo_url, tmp_path):
    from pam.data.video import write_video_mp4

    from .helpers import video_sample

    path = tmp_path / "clip.mp4"
    write_video_mp4(str(path), video_sample(num_frames=6)["pixels"])
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(demo_url)
    tab = wait.until(
        lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == "Video"]
    )
    tab[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-video input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#pam-video input[type=file]").send_keys(str(path))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-video video"))
    browser.find_element(By.CSS_SELECTOR, "#pam-video-box textarea, #pam-video-box input").send_keys("10, 20, 50, 60")
    slider = browser.find_element(By.CSS_SELECTOR, "#pam-segment input[type=number]")
    slider.clear()
    slider.send_keys("3\t")
    browser.find_element(By.CSS_SELECTOR, "#pam-stream").click()
    wait.until(
        lambda d: sum(line.startswith("frames ") for line in _value(d, "#pam-events textarea").splitlines()) == 2
    )  # 0-2, 3-5
    time.sleep(0.5)
    _screenshot(browser, tmp_path, "demo_video_tab.png")
    lines = _value(browser, "#pam-events textarea").splitlines()
    assert (
        lines[0].startswith("6 frames read")
        and lines[1].startswith("frames 0-2: ")
        and lines[2].startswith("frames 3-5: ")
    )
    preview = _fetch_png(_img_src(browser, "#pam-track"))
    assert preview.shape == (96, 128, 3)


# ----- the quick-start's trained model (soak) -----------------------------------------------------
@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """A finished quick-start run folder: ``$PAM_QUICKSTART_RUN``, or a fresh run."""
    if os.environ.get("PAM_QUICKSTART_RUN"):
        return Path(os.environ["PAM_QUICKSTART_RUN"])
    out = tmp_path_factory.mktemp("quickstart") / "run"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(root / "scripts" / "train.py"), "experiment=quickstart", f"trainer.output_dir={out}"]
    result = subprocess.run(cmd + ["trainer.progress_bar=false"], env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def quickstart_engine(quickstart_run):
    from pam.api import load_pam

    bundle = load_pam(quickstart_run / "checkpoints" / "final-stage2", dtype="float32")
    return Engine(bundle, max_new_tokens=24, model_name="pam-quickstart")


@pytest.fixture
def quickstart_url(quickstart_engine):
    yield from _serve(quickstart_engine)


def _records(run: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run / "data" / name).read_text().splitlines() if line.strip()]


def _mask(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _box_text(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    return f"{xs.min()}, {ys.min()}, {xs.max() + 1}, {ys.max() + 1}"


@pytest.mark.soak
def test_demo_image_tab_outlines_the_shape_with_the_quickstart_model(
    browser, quickstart_url, quickstart_run, quickstart_engine, tmp_path
):
    from pam.serve.demo import checked_region

    record = _records(quickstart_run, "test.jsonl")[0]
    region = record["regions"][0]
    truth = _mask(region["mask"])
    image = np.asarray(Image.open(quickstart_run / "data" / record["image"]).convert("RGB"))
    box = _box_text(truth)
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(quickstart_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-image input[type=file]"))
    assert "RANDOM" not in browser.find_element(By.ID, "pam-banner").text
    browser.find_element(By.CSS_SELECTOR, "#pam-image input[type=file]").send_keys(
        str(quickstart_run / "data" / record["image"])
    )
    wait.until(lambda d: _img_src(d, "#pam-image"))
    uploaded = _img_src(browser, "#pam-image")
    browser.find_element(By.CSS_SELECTOR, "#pam-box textarea, #pam-box input").send_keys(box)
    wait.until(lambda d: _img_src(d, "#pam-image") not in ("", uploaded))
    browser.find_element(By.CSS_SELECTOR, "#pam-describe").click()
    wait.until(lambda d: _img_src(d, "#pam-overlay") and _value(d, "#pam-detailed_caption textarea"))
    time.sleep(0.5)
    _screenshot(browser, tmp_path, "quickstart_image_tab.png")

    # the page shows the handler's overlay of the model's mask, which outlines the prompted shape
    shown = _fetch_png(_img_src(browser, "#pam-overlay"))
    assert np.array_equal(shown, np.asarray(DemoHandlers(quickstart_engine).describe(image, [], box)[0]))
    x0, y0, x1, y1 = (float(v) for v in box.split(","))
    request = RegionRequest(region=checked_region(image.shape[:2], box=[x0, y0, x1, y1]), image=image, task="category")
    mask = quickstart_engine.describe(quickstart_engine.predictor.check([request]))[0].mask
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8, f"the mask does not outline the prompted shape (IoU {iou:.2f})"
    assert _value(browser, "#pam-category textarea").strip() == region["category"]["en"]


@pytest.mark.soak
def test_demo_video_tab_splits_events_at_the_motion_change_with_the_quickstart_model(
    browser, quickstart_url, quickstart_run, tmp_path
):
    clips = [
        r for r in _records(quickstart_run, "test_video.jsonl") if r.get("video") and len(r["regions"][0]["events"]) > 1
    ]
    assert clips, "the quick-start's test split has no mp4 clip with two events"
    record = clips[0]
    region = record["regions"][0]
    events = region["events"]
    true_starts = [e["start_frame"] for e in events[1:]]
    wait = WebDriverWait(browser, 300, poll_frequency=0.2)
    browser.get(quickstart_url)
    tab = wait.until(
        lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == "Video"]
    )
    tab[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-video input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#pam-video input[type=file]").send_keys(
        str(quickstart_run / "data" / record["video"])
    )
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pam-video video"))
    first = _mask(region["masks"]["0"])
    browser.find_element(By.CSS_SELECTOR, "#pam-video-box textarea, #pam-video-box input").send_keys(_box_text(first))
    browser.find_element(By.XPATH, "//label[contains(., 'Automatic event boundaries')]//input").click()
    browser.find_element(By.CSS_SELECTOR, "#pam-stream").click()
    last = f"-{events[-1]['end_frame']}: "
    wait.until(lambda d: any(last in line for line in _value(d, "#pam-events textarea").splitlines()))
    time.sleep(0.5)
    _screenshot(browser, tmp_path, "quickstart_video_tab.png")

    lines = [line for line in _value(browser, "#pam-events textarea").splitlines() if line.startswith("frames ")]
    starts = [int(line.split()[1].split("-")[0]) for line in lines]
    assert len(starts) == len(events), lines
    assert all(abs(p - t) <= 2 for p, t in zip(starts[1:], true_starts)), (lines, true_starts)
    colour, name = region["extra"]["color"], region["category"]["en"]
    captions = [line.split(": ", 1)[1] for line in lines]
    assert all(colour in c and name in c for c in captions), captions
