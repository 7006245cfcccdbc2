"""VideoRefer-Bench's JSON: a list of entries with ``video`` (an mp4 or a frame folder, relative to
``video_root``) and ``annotation``: one dict per object, ``{frame index: {"segmentation": RLE}}``.
PAM is prompted with the first object's mask on its first annotated frame; the clip runs from that
frame to the end of the video, and SAM 2 tracks ``generation.track_frames`` of its frames (0 = all),
starting with the prompt frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..media import decode_segmentation, load_clip


def first_object_region(entry: dict, where: str) -> tuple[int, dict]:
    """(frame index, segmentation) of the first object's first annotated frame."""
    anns = entry.get("annotation")
    if not isinstance(anns, list) or not anns or not isinstance(anns[0], dict) or not anns[0]:
        raise ValueError(f"{where}: 'annotation' must be a non-empty list of {{frame: {{'segmentation': RLE}}}}")
    try:
        frame = min(anns[0], key=lambda k: int(k))
        frame_index = int(frame)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: annotation frame keys must be integers, got {list(anns[0])}") from err
    seg = anns[0][frame]
    seg = seg.get("segmentation") if isinstance(seg, dict) else None
    if not isinstance(seg, dict) or "size" not in seg:
        raise ValueError(f"{where}: object 0, frame {frame}: needs a 'segmentation' RLE with 'size'")
    return frame_index, seg


def load_item_clip(item: dict, track_frames: int) -> tuple[np.ndarray, dict]:
    """The frames to track (from the prompt frame on) and the prompt mask, which is on frame 0 of them."""
    frames = load_clip(Path(item["root"]) / item["video"], item["frame"], None, track_frames)
    mask = decode_segmentation(item["segmentation"], frames.shape[1], frames.shape[2], f"item {item['id']!r}")
    return frames, {"mask": mask}
