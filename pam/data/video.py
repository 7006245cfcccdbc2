"""Decoding images, frame folders and video files into uint8 RGB arrays.

Video files go through decord; when decord is not installed or fails on a file, PyAV decodes the
same frames (an mp4 written by PyAV's libx264 reads back pixel-identical through both). Failures
raise :class:`pam.data.skips.BadSample` with a reason code, so a dataset can skip the sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pam.data.skips import CORRUPT_IMAGE, CORRUPT_VIDEO, MISSING_MEDIA, BadSample

logger = logging.getLogger("pam.data")

BACKENDS = ("auto", "decord", "pyav")  # "auto": decord, then PyAV if decord is missing or fails


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    if not os.path.isfile(path):
        raise BadSample(MISSING_MEDIA, f"no file {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as exc:  # PIL raises many kinds on truncated or foreign files
        raise BadSample(CORRUPT_IMAGE, f"{path}: {exc}") from exc


def image_size(path: str) -> tuple[int, int]:
    """(height, width) read from the file header, without decoding pixels."""
    if not os.path.isfile(path):
        raise BadSample(MISSING_MEDIA, f"no file {path}")
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:
        raise BadSample(CORRUPT_IMAGE, f"{path}: {exc}") from exc


def read_frame_files(paths: Sequence[str], indices: Sequence[int]) -> np.ndarray:
    """(T, H, W, 3) uint8 for ``paths[i]`` with ``i`` in ``indices``; all frames must share a size."""
    frames = [read_image(paths[i]) for i in indices]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise BadSample(CORRUPT_IMAGE, f"frames of one video differ in size: {sorted(shapes)}")
    return np.stack(frames)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; expected one of {BACKENDS}")


def _decord():
    import decord  # noqa: PLC0415  (optional at import time; PyAV is the fallback)

    return decord


# what decord writes straight to stderr when it cannot open a file: its bundled FFmpeg's log lines
# ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55...] moov atom not found") and its own "[hh:mm:ss] .../video_reader.cc:83:
# ERROR opening ..."; the failure itself is raised (and PyAV tried), so these lines are noise
DECORD_NOISE = (r"^\[[\w,.-]+ @ 0x[0-9a-fA-F]+\] ", r"^\[\d\d:\d\d:\d\d\] \S*src/video/\S+\.cc:\d+: ")


def _quiet_decord():
    """Around a decord call only: its FFmpeg and C++ log lines on stderr are dropped, the rest kept."""
    from ..utils.quiet import filter_stderr  # noqa: PLC0415

    return filter_stderr(*DECORD_NOISE)


def count_video_frames(path: str, backend: str = "auto") -> int:
    """Number of frames in a video file."""
    _check_backend(backend)
    if not os.path.isfile(path):
        raise BadSample(MISSING_MEDIA, f"no file {path}")
    if backend in ("auto", "decord"):
        try:
            decord = _decord()
            with _quiet_decord():
                return len(decord.VideoReader(path, ctx=decord.cpu(0)))
        except Exception as exc:
            if backend == "decord":
                raise BadSample(CORRUPT_VIDEO, f"{path}: decord: {exc}") from exc
            logger.debug("decord could not open %s (%s); counting frames with PyAV", path, exc)
    return _count_pyav(path)


def read_video(path: str, indices: Sequence[int], backend: str = "auto") -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames ``indices`` (0-based decoded frame numbers) of a video file."""
    _check_backend(backend)
    if not os.path.isfile(path):
        raise BadSample(MISSING_MEDIA, f"no file {path}")
    indices = [int(i) for i in indices]
    if not indices or min(indices) < 0:
        raise ValueError(f"frame indices must be a non-empty list of non-negative integers, got {indices}")
    if backend in ("auto", "decord"):
        try:
            return _read_decord(path, indices)
        except BadSample:
            raise
        except Exception as exc:
            if backend == "decord":
                raise BadSample(CORRUPT_VIDEO, f"{path}: decord: {exc}") from exc
            logger.debug("decord failed on %s (%s); decoding with PyAV", path, exc)
    return _read_pyav(path, indices)


def _read_decord(path: str, indices: list[int]) -> np.ndarray:
    decord = _decord()
    with _quiet_decord():
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
        if max(indices) >= len(reader):
            raise BadSample(CORRUPT_VIDEO, f"{path} has {len(reader)} frames; frame {max(indices)} was asked for")
        return np.ascontiguousarray(reader.get_batch(indices).asnumpy(), dtype=np.uint8)


def _pyav_reason(exc: Exception) -> str:
    """PyAV's FFmpeg errors read "[Errno 1094995529] Invalid data found when processing input: 'x.mp4'";
    the reason alone is "Invalid data found when processing input"."""
    reason = getattr(exc, "strerror", None)
    return reason if isinstance(reason, str) and reason else str(exc)


def _video_stream(container, path: str):
    if not container.streams.video:  # PyAV would say "tuple index out of range"
        raise BadSample(CORRUPT_VIDEO, f"{path}: no video stream in the file")
    return container.streams.video[0]


def _count_pyav(path: str) -> int:
    import av  # noqa: PLC0415

    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            if stream.frames:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size)
    except BadSample:
        raise
    except Exception as exc:
        raise BadSample(CORRUPT_VIDEO, f"{path}: PyAV: {_pyav_reason(exc)}") from exc


def _read_pyav(path: str, indices: list[int]) -> np.ndarray:
    import av  # noqa: PLC0415

    wanted = set(indices)
    last = max(indices)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            for k, frame in enumerate(container.decode(stream)):
                if k in wanted:
                    found[k] = frame.to_ndarray(format="rgb24")
                if k >= last:
                    break
    except BadSample:
        raise
    except Exception as exc:
        raise BadSample(CORRUPT_VIDEO, f"{path}: PyAV: {_pyav_reason(exc)}") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise BadSample(CORRUPT_VIDEO, f"{path}: PyAV decoded no frame {missing[0]} (asked for {len(wanted)} frames)")
    return np.stack([found[i] for i in indices]).astype(np.uint8)


def write_video_mp4(path: str, frames: np.ndarray | Sequence[np.ndarray], fps: int = 8, crf: int = 18) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 mp4 with PyAV (H and W must be even)."""
    import av  # noqa: PLC0415

    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError("a video needs at least one frame")
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 with yuv420p needs even sizes, got {height}x{width}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
