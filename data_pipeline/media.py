"""Decoding a record's image or video frames (through pam.data.video), and resumable JSONL output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from pam.data.schema import Record
from pam.data.video import read_frame_files, read_image, read_video

from .records import record_line


def read_frames(record: Record, frames: Sequence[int], root: str | None) -> np.ndarray:
    """(T, H, W, 3) uint8: the image (frame 0) or the listed frames of a video record."""
    rec = record.resolved(root) if root else record
    if rec.image is not None:
        if list(frames) != [0]:
            raise ValueError(f"record {record.id}: an image has only frame 0, asked for {list(frames)}")
        return read_image(rec.image)[None]
    if rec.frames is not None:
        return read_frame_files(rec.frames, list(frames))
    return read_video(rec.video, list(frames))


def count_frames(record: Record, root: str | None) -> int:
    from pam.data.video import count_video_frames

    rec = record.resolved(root) if root else record
    if rec.image is not None:
        return 1
    if rec.frames is not None:
        return len(rec.frames)
    return count_video_frames(rec.video)


class ResumableOutput:
    """An append-only JSONL output: ``done`` holds the ids already written by an earlier run.

    A partial last line (a run killed mid-write) is cut off before appending. Every
    :meth:`append` is flushed and fsynced, so what a crash leaves is whole records.
    """

    def __init__(self, path: str):
        self.path = path
        self.done: set[str] = set()
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        if os.path.exists(path):
            good = 0
            with open(path, "rb") as f:
                for line in f:
                    try:
                        self.done.add(json.loads(line)["id"])
                    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                        break
                    good += len(line)
            if good != os.path.getsize(path):
                with open(path, "r+b") as f:
                    f.truncate(good)

    def append(self, records: Iterable[Record]) -> int:
        n = 0
        with open(self.path, "a", encoding="utf-8", newline="\n") as f:
            for record in records:
                f.write(record_line(record) + "\n")
                self.done.add(record.id)
                n += 1
            f.flush()
            os.fsync(f.fileno())
        return n


def shard_path(out: str, shard: int, num_shards: int) -> str:
    """``out.jsonl`` for one shard, ``out.shard-00002-of-00008.jsonl`` for several."""
    if num_shards == 1:
        return out
    stem = out[: -len(".jsonl")] if out.endswith(".jsonl") else out
    return f"{stem}.shard-{shard:05d}-of-{num_shards:05d}.jsonl"
