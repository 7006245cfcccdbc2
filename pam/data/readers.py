"""Readers from annotation files to :class:`pam.data.schema.Record` lists.

- :func:`read_jsonl` / :func:`write_jsonl`: this project's schema (see ``schema.py``).
- :func:`read_upstream_jsonl`: the released PAM-data files (``type``, ``image`` or ``image_root`` +
  ``frames``, ``bbox``, ``points``, ``labels``, ``conversations``, ``obj_id``, ...), read the way the
  upstream training code reads them, so the release trains as it is.

Converters from other public formats (COCO, LVIS, PACO, RefCOCO, SA-V, ...) live in the top-level
``data_pipeline`` package (``python -m data_pipeline convert ...``), which writes this schema.

Relative media paths resolve against ``root`` (default: the annotation file's folder); the records
returned carry absolute paths.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from pam.data.schema import LANGUAGES, Record, RegionAnnotation, SchemaError
from pam.processing.prompts import IMAGE_PLACEHOLDER, Task, task_prompt
from pam.utils.jsonl import iter_jsonl_lines, write_jsonl_objects

logger = logging.getLogger("pam.data")

ON_ERROR = ("raise", "skip")  # what a reader does with an invalid line: stop, or log it and drop it
_UPSTREAM_ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
_CJK = re.compile(r"[\u3400-\u9fff]")


def _default_root(path: str, root: str | os.PathLike | None) -> str:
    return os.path.abspath(root if root is not None else os.path.dirname(os.path.abspath(path)))


def _read_lines(path: str, convert, on_error: str) -> list[Record]:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    records: list[Record] = []
    dropped = 0
    if path.endswith(".json"):  # upstream also accepts one JSON list
        with open(path, encoding="utf-8") as f:
            items: Iterable[tuple[int, Any]] = list(enumerate(json.load(f), start=1))
    else:
        items = (
            (n, SchemaError(str(row)) if isinstance(row, ValueError) else row) for n, row in iter_jsonl_lines(path)
        )
    for lineno, obj in items:
        try:
            if isinstance(obj, SchemaError):
                raise obj
            records.append(convert(obj, f"{path}:{lineno}", lineno))
        except SchemaError as exc:
            if on_error == "raise":
                raise
            dropped += 1
            logger.warning("dropping invalid record: %s", exc)
    if dropped:
        logger.warning("%s: dropped %d invalid records, kept %d", path, dropped, len(records))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SchemaError(f"{path}: record id {dup!r} occurs more than once; ids must be unique")
    return records


def read_jsonl(path: str, root: str | os.PathLike | None = None, *, on_error: str = "raise") -> list[Record]:
    """Records of a JSONL file in this project's schema, with media paths resolved against ``root``."""
    base = _default_root(path, root)
    return _read_lines(path, lambda obj, where, _: Record.from_dict(obj, where).resolved(base), on_error)


def write_jsonl(path: str, records: Iterable[Record]) -> None:
    """Write records as JSONL (UTF-8, one compact line each, deterministic bytes)."""
    write_jsonl_objects(path, (r.to_dict() for r in records))


# ----------------------------------------------------------------------------------- upstream

_UPSTREAM_KEYS = {
    "id",
    "type",
    "image",
    "image_root",
    "frames",
    "masked_frames",
    "bbox",
    "points",
    "labels",
    "conversations",
    "obj_id",
}


def _task_prefixes() -> list[tuple[str, str, str]]:
    """(task, language, instruction text without the placeholder); video prompts up to the history."""
    out = []
    for task in Task:
        for lang in LANGUAGES:
            marker = "\x00"
            text = task_prompt(task, lang, history=marker if task is Task.VIDEO_CAPTION else None)
            out.append((task.value, lang, text[len(IMAGE_PLACEHOLDER) :].strip().split(marker)[0]))
    return out


def infer_task(first_user_turn: str) -> tuple[str | None, str | None]:
    """The (task, language) whose prompt the turn uses, or (None, None) for a free-form turn."""
    body = first_user_turn.replace(IMAGE_PLACEHOLDER, "").strip()
    for task, lang, text in _task_prefixes():
        exact = task != Task.VIDEO_CAPTION.value
        if (exact and body == text) or (not exact and body.startswith(text)):
            return task, lang
    return None, None


def upstream_turns(conversations: Any, where: str) -> list[dict[str, str]]:
    """Upstream ``[{"from": "human"|"gpt", "value"}]`` (or role/content) as user/assistant turns.

    As upstream does, a single ``<image>`` that is not at the start of a turn is moved there, followed
    by a newline. A first user turn without the placeholder gets one in front.
    """
    if not isinstance(conversations, list) or not conversations:
        raise SchemaError(f"{where}: field `conversations` must be a non-empty list of turns")
    turns = []
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise SchemaError(f"{where}: field `conversations[{k}]` must be an object")
        role, content = (
            (turn.get("from"), turn.get("value")) if "from" in turn else (turn.get("role"), turn.get("content"))
        )
        if role not in _UPSTREAM_ROLES:
            raise SchemaError(f"{where}: field `conversations[{k}].from` must be human or gpt, got {role!r}")
        if not isinstance(content, str):
            raise SchemaError(f"{where}: field `conversations[{k}].value` must be a string")
        if content.count(IMAGE_PLACEHOLDER) == 1 and not content.startswith(IMAGE_PLACEHOLDER):
            content = f"{IMAGE_PLACEHOLDER}\n{content.replace(IMAGE_PLACEHOLDER, '').strip()}"
        turns.append({"role": _UPSTREAM_ROLES[role], "content": content.strip()})
    if turns[0]["role"] == "assistant":  # upstream drops a leading gpt turn
        turns = turns[1:]
    first_user = next((t for t in turns if t["role"] == "user"), None)
    if first_user is None or not turns or turns[-1]["role"] != "assistant":
        raise SchemaError(f"{where}: field `conversations` needs a human turn and must end with a gpt turn")
    if not any(IMAGE_PLACEHOLDER in t["content"] for t in turns):
        first_user["content"] = f"{IMAGE_PLACEHOLDER}\n{first_user['content']}"
    return turns


def _xywh(value: Any, where: str, name: str) -> list[float]:
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(c, (int, float)) for c in value)):
        raise SchemaError(f"{where}: field `{name}` must be [x, y, w, h], got {value!r}")
    return [float(c) for c in value]


def _point_list(value: Any, where: str, name: str) -> list[list[float]]:
    if not (isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value)):
        raise SchemaError(f"{where}: field `{name}` must be a non-empty list of [x, y], got {value!r}")
    return [[float(x), float(y)] for x, y in value]


def upstream_record(item: Any, where: str, default_id: str, language: str | None = None) -> Record:
    """One released PAM-data line as a Record (paths as given; not yet resolved)."""
    if not isinstance(item, dict):
        raise SchemaError(f"{where}: a line must be a JSON object")
    kind = item.get("type")
    if kind not in ("image", "video"):
        raise SchemaError(f"{where}: field `type` must be 'image' or 'video', got {kind!r}")
    video = kind == "video"
    rid = str(item["id"]) if item.get("id") is not None else default_id
    region = RegionAnnotation()
    # Upstream: an image's bbox is one [x, y, w, h], its points one list of [x, y]; a video's are
    # per frame (upstream prompts with element 0 on the first frame). null means "not given".
    bbox, points, labels = item.get("bbox"), item.get("points"), item.get("labels")
    if bbox is not None:
        per_frame = bbox if video and bbox and isinstance(bbox[0], list) else [bbox]
        region.boxes = {
            f: _xywh(b, where, f"bbox[{f}]" if video else "bbox") for f, b in enumerate(per_frame) if b is not None
        }
    if points is not None:
        per_frame = points if video else [points]
        per_labels = (labels if video else [labels]) if labels is not None else [None] * len(per_frame)
        if len(per_labels) != len(per_frame):
            raise SchemaError(f"{where}: field `labels` must match `points` frame for frame")
        for f, (pts, labs) in enumerate(zip(per_frame, per_labels)):
            if pts is None:
                continue
            name = f"points[{f}]" if video else "points"
            region.points[f] = _point_list(pts, where, name)
            labs = [1] * len(pts) if labs is None else labs
            if not (isinstance(labs, list) and len(labs) == len(pts) and all(lab in (0, 1) for lab in labs)):
                raise SchemaError(
                    f"{where}: field `{name.replace('points', 'labels')}` must give one 0/1 label per point, "
                    f"got {labs!r}"
                )
            region.point_labels[f] = [int(lab) for lab in labs]
    if not region.boxes and not region.points:
        raise SchemaError(f"{where}: fields `bbox` and `points` are both missing or null; a region needs a prompt")
    region.conversations = upstream_turns(item.get("conversations"), where)
    task, prompt_lang = infer_task(next(t["content"] for t in region.conversations if t["role"] == "user"))
    text = " ".join(t["content"] for t in region.conversations)
    region.language = language or prompt_lang or ("zh" if _CJK.search(text) else "en")
    region.task = task or "conversation"
    region.extra = {k: item[k] for k in ("obj_id", "masked_frames") if k in item}
    extra = {k: v for k, v in item.items() if k not in _UPSTREAM_KEYS}
    if video:
        frames = item.get("frames")
        if not (isinstance(frames, list) and frames and all(isinstance(f, str) for f in frames)):
            raise SchemaError(f"{where}: field `frames` must be a non-empty list of frame file names")
        root = item.get("image_root")
        if root is not None and not isinstance(root, str):
            raise SchemaError(f"{where}: field `image_root` must be a string")
        data = {"id": rid, "frames": frames, "frames_root": root, "regions": [], "extra": extra}
    else:
        image = item.get("image")
        if isinstance(image, list):
            if len(image) != 1:
                raise SchemaError(
                    f"{where}: field `image` lists {len(image)} images; one image per record is supported"
                )
            image = image[0]
        if not isinstance(image, str) or not image:
            raise SchemaError(f"{where}: field `image` must be an image path, got {image!r}")
        data = {"id": rid, "image": image, "regions": [], "extra": extra}
    record = Record.from_dict(data, where)
    record.regions = [region]
    last = len(record.frames) if record.frames else 1
    bad = [f for f in region.annotated_frames() if f >= last]
    if bad:
        raise SchemaError(f"{where}: fields `bbox`/`points` give frame {bad[0]} but the record has {last} frame(s)")
    return record


def remap_prefix(path: str | None, prefix_map: dict[str, str] | None) -> str | None:
    """``path`` with the first matching old prefix of ``prefix_map`` replaced by its new prefix."""
    if path is None or not prefix_map:
        return path
    for old, new in prefix_map.items():
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + path[len(old.rstrip("/")) :]
    return path


def read_upstream_jsonl(
    path: str,
    root: str | os.PathLike | None = None,
    *,
    language: str | None = None,
    on_error: str = "raise",
    source: str | None = None,
    path_prefix_map: dict[str, str] | None = None,
) -> list[Record]:
    """Records of a released PAM-data ``.jsonl`` (or ``.json`` list) file.

    ``language`` labels every record (the release ships one file per language, ``*_en`` / ``*_ch``);
    by default it comes from the prompt wording, else from the presence of Chinese characters.
    ``path_prefix_map`` rewrites absolute ``image`` / ``image_root`` prefixes written on another
    machine, e.g. ``{"/home/ubuntu/SAV_data": "/data/sav"}``.
    """
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    base = _default_root(path, root)
    stem = os.path.splitext(os.path.basename(path))[0]

    def convert(obj: Any, where: str, lineno: int) -> Record:
        record = upstream_record(obj, where, f"{stem}:{lineno}", language)
        record.source = source or stem
        record.image = remap_prefix(record.image, path_prefix_map)
        record.frames_root = remap_prefix(record.frames_root, path_prefix_map)
        return record.resolved(base)

    return _read_lines(path, convert, on_error)
