"""Gradio demo: describe an image region (points or a box), stream captions of a tracked video region.

Image tab: upload an image, click it to add points (positive or negative) and/or type a box; one
"Describe" runs the four image tasks on the region in one model call (one SAM 2 encode) and shows
the mask overlay with the category, the explanation, the short and the detailed caption. Video
tab: upload a video, type a box on frame 0; captions arrive segment by segment, each with the
tracked mask drawn on the segment's last frame. All model calls go through ``Engine`` (the
predictor) and are serialised by a lock (Gradio runs handlers on several threads); regions are
checked by the predictor's one validator, tasks and labels come from the task vocabulary.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

# the one import of the drawing helpers in pam/serve
from ..inference.regions import InputError, Region
from ..inference.request import RegionRequest
from ..processing.prompts import IMAGE_TASKS as TASK_NAMES
from ..processing.prompts import TASK_LABELS
from ..utils.visualize import overlay
from .engine import Engine
from .protocol import RequestError, image_key

log = logging.getLogger(__name__)
USER_ERRORS = (RequestError, ValueError, FileNotFoundError)  # bad user input: shown in the UI, one log line
IMAGE_TASKS = tuple((task, TASK_LABELS[task]) for task in TASK_NAMES)  # (task, label) per answer box
MAX_VIDEO_FRAMES = 64


def box_numbers(text: str) -> list[float] | None:
    """ "x0, y0, x1, y1" (commas or spaces) -> the numbers, or None for an empty field."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise RequestError("box", f"box must be four numbers x0, y0, x1, y1, got {text!r}") from None


def checked_region(hw: tuple[int, int], box=None, points=None, labels=None) -> Region:
    """The UI's box and clicks through the one region validator; errors name the UI field."""
    try:
        return Region(points=points, labels=labels, box=box).checked(hw, "region")
    except InputError as err:
        raise RequestError(err.field or "region", str(err)) from None


def parse_box_text(text: str, hw: tuple[int, int]) -> np.ndarray | None:
    """ "x0, y0, x1, y1" -> a validated box, or None for an empty field."""
    values = box_numbers(text)
    return None if values is None else checked_region(hw, box=values).box


def shown_text(text: str, n_tokens: int) -> str:
    if text:
        return text
    return f"(no text: the model produced {n_tokens} tokens that decode to whitespace or special tokens)"


def read_clip(path: str, max_frames: int = MAX_VIDEO_FRAMES) -> tuple[np.ndarray, list[int]]:
    """Up to ``max_frames`` frames of a video, evenly spaced over it, and their indices."""
    from ..data.skips import BadSample
    from ..data.video import count_video_frames, read_video

    try:
        total = count_video_frames(path)
        if total < 1:
            raise ValueError(f"{path}: no frames")
        indices = sorted({round(float(i)) for i in np.linspace(0, total - 1, min(total, max_frames))})
        return read_video(path, indices), indices
    except BadSample as err:  # a corrupt or unreadable upload is bad input, not a crash
        raise RequestError("video", f"the video cannot be read ({err.reason}): {err.detail}") from None


class DemoHandlers:
    """The demo's callbacks, free of Gradio so they can be tested directly."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.lock = threading.Lock()

    def describe(self, image: np.ndarray | None, points: list, box_text: str):
        """(overlay, category, explanation, short caption, detailed caption, info)."""
        if image is None:
            raise RequestError("image", "upload an image first")
        image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[..., :3])
        hw = image.shape[:2]
        box = box_numbers(box_text)
        if box is None and not points:
            raise RequestError("region", "click the image to add points or type a box x0, y0, x1, y1")
        pts = [p[:2] for p in points] if points else None
        region = checked_region(hw, box=box, points=pts, labels=[p[2] for p in points] if points else None)
        key = image_key(image)
        requests = [RegionRequest(region=region, image=image, task=task, image_key=key) for task, _ in IMAGE_TASKS]
        try:
            requests = self.engine.predictor.check(requests)
        except InputError as err:
            raise RequestError(err.field or "region", str(err)) from None
        start = time.perf_counter()
        with self.lock:
            answers = self.engine.describe(requests)
        seconds = time.perf_counter() - start
        first = answers[0]
        picture = overlay(image, first.mask, box=region.box, points=region.points, labels=region.labels)
        texts = [shown_text(a.text, len(a.token_ids)) for a in answers]
        info = (
            f"mask score (SAM 2 IoU) {first.score:.3f} · mask area {int(first.mask.sum())} px · "
            f"{seconds:.2f} s for four answers (one SAM 2 encode)"
        )
        return (picture, *texts, info)

    def draw_prompt(self, image: np.ndarray | None, points: list, box_text: str) -> np.ndarray | None:
        if image is None:
            return None
        image = np.asarray(image, dtype=np.uint8)[..., :3]
        try:
            box = parse_box_text(box_text, image.shape[:2])
        except RequestError:
            box = None
        pts = np.array([p[:2] for p in points], dtype=np.float32) if points else None
        labels = [p[2] for p in points] if points else None
        return np.asarray(overlay(image, np.zeros(image.shape[:2], bool), box=box, points=pts, labels=labels))

    def stream(
        self,
        video_path: str | None,
        box_text: str,
        segment_length: int,
        automatic: bool = False,
        max_frames: int = MAX_VIDEO_FRAMES,
    ):
        """Yields (mask preview, events text, gallery) after each captioned event: fixed windows
        of ``segment_length`` frames, or the predictor's automatic boundaries."""
        if not video_path:
            raise RequestError("video", "upload a video first")
        frames, indices = read_clip(video_path, int(max_frames))
        box = parse_box_text(box_text, frames.shape[1:3])
        if box is None:
            raise RequestError("box", "type a box x0, y0, x1, y1 on frame 0")
        cut = "automatic event boundaries" if automatic else f"segments of {int(segment_length)} frames"
        lines = [
            f"{len(frames)} frames read (video frames {indices[0]}..{indices[-1]}); one caption per event ({cut}):"
        ]
        gallery: list[tuple[np.ndarray, str]] = []
        first = np.asarray(overlay(frames[0], np.zeros(frames.shape[1:3], bool), box=box))
        yield first, "\n".join(lines + ["(tracking the first segment...)"]), gallery
        with self.lock:
            for event in self.engine.stream_video(
                frames, {"box": box}, segment_length=None if automatic else int(segment_length)
            ):
                last = np.asarray(event.masks[-1])
                caption = " ".join(event.caption.split()) or "(no text)"  # one line per event
                lines.append(f"frames {event.start_frame}-{event.end_frame}: {caption}")
                preview = np.asarray(overlay(frames[event.end_frame], last, caption=f"frame {event.end_frame}"))
                gallery.append((preview, f"{event.start_frame}-{event.end_frame}: {caption}"))
                yield preview, "\n".join(lines), list(gallery)


def ui_error(gr, action: str, err: Exception):
    """Bad user input: one line in the log, the message in the UI, and no traceback on the terminal
    (Gradio prints one for every error unless told not to)."""
    message = " ".join(str(err).split())
    log.warning("demo %s: bad input: %s", action, message)
    return gr.Error(message, print_exception=False)


def build_demo(engine: Engine):
    """The Gradio Blocks app (call ``launch_demo`` or ``.launch()`` on it)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    h = DemoHandlers(engine)
    warn = (
        "**This is the debug-size model with RANDOM weights** (no `--checkpoint` given): "
        "masks and text are meaningless; "
        "it shows the pipeline, not PAM's quality."
        if engine.random_weights
        else f"Model: `{engine.model_name}`."
    )

    def as_ui_error(fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except USER_ERRORS as err:
                raise ui_error(gr, fn.__name__, err) from None

        return wrapped

    def as_ui_stream(fn):
        def wrapped(*args):
            try:
                yield from fn(*args)
            except USER_ERRORS as err:
                raise ui_error(gr, fn.__name__, err) from None

        return wrapped

    with gr.Blocks(title="PAM demo", analytics_enabled=False) as demo:
        gr.Markdown(f"# PAM: Perceive Anything Model\n{warn}", elem_id="pam-banner")
        with gr.Tab("Image"):
            original = gr.State(None)
            points = gr.State([])
            with gr.Row():
                with gr.Column():
                    image_in = gr.Image(
                        label="Image (click to add points)",
                        type="numpy",
                        sources=["upload"],
                        elem_id="pam-image",
                        format="png",
                    )
                    box = gr.Textbox(
                        label="Box x0, y0, x1, y1 (pixels)", placeholder="e.g. 50, 40, 190, 130", elem_id="pam-box"
                    )
                    label = gr.Radio(["positive", "negative"], value="positive", label="Next click adds a")
                    with gr.Row():
                        clear = gr.Button("Clear points")
                        run = gr.Button("Describe", variant="primary", elem_id="pam-describe")
                with gr.Column():
                    picture = gr.Image(
                        label="Mask overlay", type="numpy", interactive=False, elem_id="pam-overlay", format="png"
                    )
                    outputs = [
                        gr.Textbox(label=name, elem_id=f"pam-{task}", interactive=False) for task, name in IMAGE_TASKS
                    ]
                    info = gr.Markdown(elem_id="pam-info")

            def on_upload(img):
                return img, []

            def on_click(img, pts, box_text, which, evt):
                if img is None:
                    return gr.update(), pts
                x, y = evt.index[:2]
                pts = [*pts, [float(x), float(y), 1 if which == "positive" else 0]]
                return h.draw_prompt(img, pts, box_text), pts

            on_click.__annotations__["evt"] = gr.SelectData  # a real class: Gradio injects the click by type

            def on_clear(img, box_text):
                return h.draw_prompt(img, [], box_text) if img is not None else None, []

            image_in.upload(on_upload, image_in, [original, points])
            image_in.clear(lambda: (None, []), None, [original, points])
            image_in.select(on_click, [original, points, box, label], [image_in, points])
            box.change(
                lambda img, pts, b: h.draw_prompt(img, pts, b) if img is not None else gr.update(),
                [original, points, box],
                image_in,
            )
            clear.click(on_clear, [original, box], [image_in, points])
            run.click(as_ui_error(h.describe), [original, points, box], [picture, *outputs, info])

        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="Video", sources=["upload"], elem_id="pam-video")
                    vbox = gr.Textbox(label="Box on frame 0: x0, y0, x1, y1", elem_id="pam-video-box")
                    seg = gr.Slider(1, 32, value=8, step=1, label="Frames per segment", elem_id="pam-segment")
                    auto = gr.Checkbox(
                        False, label="Automatic event boundaries (motion change points) instead of fixed segments"
                    )
                    vrun = gr.Button("Stream captions", variant="primary", elem_id="pam-stream")
                with gr.Column():
                    preview = gr.Image(
                        label="Tracked mask (last frame of the latest segment)",
                        interactive=False,
                        elem_id="pam-track",
                        format="png",
                    )
                    events = gr.Textbox(label="Event captions", lines=8, interactive=False, elem_id="pam-events")
                    gallery = gr.Gallery(label="Segments", columns=4, elem_id="pam-gallery")
            vrun.click(as_ui_stream(h.stream), [video, vbox, seg, auto], [preview, events, gallery])
    return demo


def launch_demo(
    engine: Engine, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True, share: bool = False
):
    """Serve the demo; with ``block=False`` return at once (the server runs on a thread). ``share``
    asks Gradio for a public link; without it Gradio's launch output (and its share hint) is quiet
    and one line names the local URL."""
    import gradio as gr

    demo = build_demo(engine)
    demo.queue(default_concurrency_limit=1)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        quiet=not (block and share),
        ssr_mode=False,
        theme=theme,
        footer_links=[],
    )
    if block:
        if not share:
            print(f"pam demo: serving on {demo.local_url} (Ctrl-C to stop)", flush=True)
        demo.block_thread()
    return demo
