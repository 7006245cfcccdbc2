"""VideoRefer-Bench's JSON (DAMO-NLP-SG/VideoRefer ``benchmark/README.md``): a list of entries with
``video`` (an mp4 or a frame folder, relative to ``video_root``), ``frame_idx`` and ``annotation``:
one dict per object, ``{frame index: {"segmentation": RLE or null}}``; the k-th object is the k-th
``<region>`` of the text.

As the official inference in its default ``single`` mode, each object is prompted with its mask on
frame ``frame_idx`` (a ``null`` segmentation is an empty mask). PAM takes one region per prompt, so
the prompt is one object's mask at ``frame_idx``; the clip runs from that frame to the end of the
video and SAM 2 tracks ``generation.track_frames`` of its frames (0 = all), the prompt frame first.
An object whose mask at ``frame_idx`` is empty is prompted on its nearest annotated frame with a
non-empty mask instead (logged, one line).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..media import decode_segmentation, load_clip

log = logging.getLogger("pam.eval")


def read_objects(entry: dict, where: str) -> tuple[int, list[dict[int, dict | None]]]:
    """``(frame_idx, objects)`` of an entry: per object ``{frame: segmentation or None}``; every
    object must have an entry for ``frame_idx`` (the official ``single`` mode reads it)."""
    if "frame_idx" not in entry:
        raise ValueError(f"{where}, field 'frame_idx': missing (the official single-frame mode prompts on it)")
    try:
        frame_idx = int(str(entry["frame_idx"]))
    except ValueError as err:
        raise ValueError(f"{where}, field 'frame_idx': expected a frame number, got {entry['frame_idx']!r}") from err
    anns = entry.get("annotation")
    if not isinstance(anns, list) or not anns or not all(isinstance(a, dict) and a for a in anns):
        raise ValueError(
            f"{where}, field 'annotation': expected a non-empty list of {{frame: {{'segmentation': RLE}}}}"
        )
    objects = []
    for k, ann in enumerate(anns):
        frames: dict[int, dict | None] = {}
        for key, value in ann.items():
            try:
                frame = int(str(key))
            except ValueError as err:
                raise ValueError(f"{where}, field 'annotation[{k}]': frame keys must be integers, got {key!r}") from err
            seg = value.get("segmentation", "missing") if isinstance(value, dict) else "missing"
            if seg == "missing" or not (seg is None or isinstance(seg, (dict, list))):
                raise ValueError(
                    f"{where}, field 'annotation[{k}][{key!r}]': needs a 'segmentation' (RLE, polygons or null)"
                )
            frames[frame] = seg
        if frame_idx not in frames:
            raise ValueError(
                f"{where}, field 'annotation[{k}]': no mask on frame_idx {frame_idx} (frames {sorted(frames)})"
            )
        objects.append(frames)
    return frame_idx, objects


def object_mask(item: dict, k: int, frame: int, height: int, width: int) -> np.ndarray:
    seg = item["objects"][k][frame]
    if seg is None:
        return np.zeros((height, width), bool)
    return decode_segmentation(
        seg, height, width, f"{item['where']}, field 'annotation[{k}][{frame}]'", allow_empty=True
    )


def prompt_frame(item: dict, k: int, height: int, width: int) -> tuple[int, np.ndarray] | None:
    """(frame, mask) object ``k`` is prompted with: ``frame_idx``, else its nearest annotated frame
    with a non-empty mask; None if it has none."""
    frame_idx = item["frame"]
    for frame in sorted(item["objects"][k], key=lambda f: (abs(f - frame_idx), f)):
        mask = object_mask(item, k, frame, height, width)
        if mask.any():
            if frame != frame_idx:
                log.warning(
                    "%s, field 'annotation[%d][%r]': empty mask on frame_idx; prompting on frame %d",
                    item["where"],
                    k,
                    str(frame_idx),
                    frame,
                )
            return frame, mask
    return None


def frame_size(video: Path) -> tuple[int, int]:
    """(height, width) of a video file or frame folder (from its first frame)."""
    first = load_clip(video, 0, 0, 0)
    return int(first.shape[1]), int(first.shape[2])


def load_object_clip(item: dict, k: int, track_frames: int) -> tuple[np.ndarray, dict] | None:
    """The frames to track (from object ``k``'s prompt frame to the end) and its mask on the first of
    them; None when the object has no non-empty mask at all (logged)."""
    video = Path(item["root"]) / item["video"]
    height, width = frame_size(video)
    found = prompt_frame(item, k, height, width)
    if found is None:
        log.warning(
            "%s, field 'annotation[%d]': every mask of the object is empty; no prompt, empty answer", item["where"], k
        )
        return None
    frame, mask = found
    return load_clip(video, frame, None, track_frames), {"mask": mask}
