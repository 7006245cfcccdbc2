"""Video inputs for the predictor: an array, a list of frames, a video file or a folder of frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.skips import BadSample
from ..data.video import count_video_frames, read_frame_files, read_video
from ..utils.layout import spread_frames
from .regions import ImageInputError, load_rgb

even_indices = spread_frames  # the name tests and callers used; one function for training and inference

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_video(video, *, max_frames: int | None = None, start: int = 0) -> tuple[np.ndarray, list[int]]:
    """(T, H, W, 3) uint8 frames from ``start`` on (all, or ``max_frames`` spread evenly) and their
    indices in the input video. Video files are decoded with decord (PyAV as fallback)."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_tracked_frames must be >= 1, got {max_frames}")
    if isinstance(video, (str, Path)):
        path = Path(video)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{path}: no image frames ({', '.join(FRAME_SUFFIXES)})")
            idx = _indices(len(files), start, max_frames)
            return _read(lambda: read_frame_files([str(f) for f in files], idx), path), idx
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file or frame folder")
        total = _read(lambda: count_video_frames(str(path)), path)
        idx = _indices(total, start, max_frames)
        return _read(lambda: read_video(str(path), idx), path), idx
    if isinstance(video, np.ndarray) and video.ndim == 4:
        frames = video
    else:
        frames = np.stack([load_rgb(f, f"frame {i}") for i, f in enumerate(video)])
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ImageInputError(f"video frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    idx = _indices(len(frames), start, max_frames)
    return frames[idx], idx


def _indices(total: int, start: int, max_frames: int | None) -> list[int]:
    if total < 1:
        raise ImageInputError("the video has no frames")
    if not 0 <= start < total:
        raise ValueError(f"frame_index {start} is outside the video's {total} frames")
    return even_indices(start, total - 1, max_frames)


def _read(fn, path: Path):
    try:
        return fn()
    except BadSample as e:
        raise ImageInputError(f"{path}: {e}") from None
