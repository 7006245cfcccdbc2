"""The region-annotation schema: one JSON object per line (JSONL), one record per image or video.

Image record::

    {
        "id": "coco/139",  # unique, required
        "image": "images/000139.png",  # path; relative paths resolve against the reader's root
        "height": 426,
        "width": 640,  # optional; needed only to decode polygon masks early
        "source": "coco",  # optional: where the record came from
        "regions": [
            {
                "mask": {"size": [426, 640], "counts": "..."},  # COCO RLE (counts: str or list of ints),
                # or polygons [[x0, y0, x1, y1, ...], ...]
                "box": [x, y, w, h],  # pixels, top-left origin
                "points": [[x, y], ...],
                "point_labels": [1, 0, ...],  # 1 = positive, 0 = negative
                "category": "tomato",  # each text field is a string (English)
                "definition": {"en": "...", "zh": "..."},  # or a {"en": ..., "zh": ...} mapping
                "function": "...",
                "short_caption": "...",
                "detailed_caption": "...",
                "conversations": [
                    {"role": "user", "content": "<image>\\n..."},
                    {"role": "assistant", "content": "..."},
                ],  # optional, used as given
                "language": "en",
                "task": "category",  # of `conversations`, when it is given
                "extra": {...},
            }
        ],  # anything else to keep (ids, raw names)
        "extra": {...},
    }

Video record: ``"video": "clip.mp4"`` (decoded with decord, or PyAV as fallback), or
``"frames": ["00000.jpg", ...]`` with an optional ``"frames_root": "frames/clip"`` the frame names
are relative to. Frame indices count decoded frames of the mp4, or positions in ``frames``. Each
region gives its annotations per frame as ``{frame_index: value}``, with the plural names
``masks``, ``boxes``, ``points`` and ``point_labels``::

     "regions": [{"masks": {"0": rle, "5": rle}, "boxes": {"0": [x, y, w, h]},
                  "points": {"0": [[x, y]]}, "point_labels": {"0": [1]},
                  "category": "kite", "short_caption": "...",
                  "events": [{"start_frame": 0, "end_frame": 11, "caption": "the kite moves right"},
                             {"start_frame": 12, "end_frame": 23, "caption": {"en": "...", "zh": "..."}}]}]

``end_frame`` is inclusive. Inside Python every region keeps its annotations per frame (an image's
live at frame 0), so one code path serves images and video. ``Record.from_dict`` validates a line
and raises :class:`SchemaError` naming the file, line and field; ``Record.to_dict`` writes the
canonical form back, and ``Record.from_dict(r.to_dict()) == r`` for every valid record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pam.data.masks import decode_polygons, decode_rle, encode_mask

TEXT_FIELDS = ("category", "definition", "function", "short_caption", "detailed_caption")
LANGUAGES = ("en", "zh")
ROLES = ("user", "assistant")
_IMAGE_KEYS = {"mask": "masks", "box": "boxes", "points": "points", "point_labels": "point_labels"}
_VIDEO_KEYS = ("masks", "boxes", "points", "point_labels")
_REGION_KEYS = (
    set(_IMAGE_KEYS) | set(_VIDEO_KEYS) | set(TEXT_FIELDS) | {"events", "conversations", "language", "task", "extra"}
)
_RECORD_KEYS = {"id", "image", "video", "frames", "frames_root", "height", "width", "source", "regions", "extra"}


class SchemaError(ValueError):
    """A record breaks the schema; the message starts with ``file:line`` and names the field."""


class PathEscapeError(SchemaError):
    """A relative media path in an annotation leads outside the configured data root."""


def _fail(where: str, name: str, message: str) -> None:
    raise SchemaError(f"{where}: field `{name}` {message}")


Text = dict[str, str]  # language code -> text


def parse_text(value: Any, where: str, name: str) -> Text:
    if isinstance(value, str):
        value = {"en": value}
    if not isinstance(value, dict) or not value:
        _fail(where, name, f"must be a string or a non-empty {{'en': ..., 'zh': ...}} mapping, got {value!r}")
    for lang, text in value.items():
        if lang not in LANGUAGES:
            _fail(where, name, f"has unknown language {lang!r}; expected one of {LANGUAGES}")
        if not isinstance(text, str) or not text.strip():
            _fail(where, f"{name}.{lang}", f"must be a non-empty string, got {text!r}")
    return dict(value)


def text_to_json(text: Text) -> str | Text:
    return text["en"] if set(text) == {"en"} else dict(text)


@dataclass
class MaskAnnotation:
    """A COCO RLE (``rle``) or a list of polygons (``polygons``); exactly one is set."""

    rle: dict | None = None  # {"size": [h, w], "counts": str (compressed) | list[int] (uncompressed)}
    polygons: list[list[float]] | None = None  # [[x0, y0, x1, y1, ...], ...] in pixels

    @classmethod
    def from_json(cls, value: Any, where: str, name: str) -> MaskAnnotation:
        if isinstance(value, dict):
            if set(value) != {"size", "counts"}:
                _fail(where, name, f"RLE must have exactly the keys 'size' and 'counts', got {sorted(value)}")
            size = value["size"]
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
                _fail(where, f"{name}.size", f"must be [height, width] positive integers, got {size!r}")
            counts = value["counts"]
            if not (isinstance(counts, str) or (isinstance(counts, list) and all(isinstance(c, int) for c in counts))):
                _fail(where, f"{name}.counts", "must be a compressed RLE string or a list of integers")
            return cls(rle={"size": list(size), "counts": counts if isinstance(counts, str) else list(counts)})
        if isinstance(value, list) and value and all(isinstance(p, list) for p in value):
            polys = []
            for k, poly in enumerate(value):
                if len(poly) < 6 or len(poly) % 2 or not all(isinstance(c, (int, float)) for c in poly):
                    _fail(where, f"{name}[{k}]", "must be a flat list of at least 3 (x, y) pairs")
                polys.append([float(c) for c in poly])
            return cls(polygons=polys)
        _fail(where, name, "must be an RLE {'size', 'counts'} or a list of polygons [[x0, y0, x1, y1, ...], ...]")
        raise AssertionError  # unreachable

    def to_json(self) -> dict | list:
        return dict(self.rle) if self.rle is not None else [list(p) for p in self.polygons or []]

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.rle["size"][0], self.rle["size"][1]) if self.rle is not None else None

    def decode(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Boolean (H, W) mask. Raises ``ValueError`` if the RLE is invalid or the size disagrees."""
        if self.rle is not None:
            h, w = self.rle["size"]
            if height is not None and (h, w) != (height, width):
                raise ValueError(f"mask size {h}x{w} differs from image size {height}x{width}")
            return decode_rle(self.rle["size"], self.rle["counts"])
        if height is None or width is None:
            raise ValueError("decoding a polygon mask needs the image height and width")
        return decode_polygons(self.polygons or [], height, width)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> MaskAnnotation:
        """Compressed RLE of a boolean (H, W) array."""
        return cls(rle=encode_mask(mask))


@dataclass
class Event:
    """A time span of a video region with its caption; ``end_frame`` is inclusive."""

    start_frame: int
    end_frame: int
    caption: Text

    @classmethod
    def from_json(cls, value: Any, where: str, name: str) -> Event:
        if not isinstance(value, dict) or set(value) != {"start_frame", "end_frame", "caption"}:
            _fail(where, name, f"must be {{'start_frame', 'end_frame', 'caption'}}, got {value!r}")
        s, e = value["start_frame"], value["end_frame"]
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s <= e):
            _fail(where, name, f"needs integers 0 <= start_frame <= end_frame, got {s!r}, {e!r}")
        return cls(start_frame=s, end_frame=e, caption=parse_text(value["caption"], where, f"{name}.caption"))

    def to_json(self) -> dict:
        return {"start_frame": self.start_frame, "end_frame": self.end_frame, "caption": text_to_json(self.caption)}


@dataclass
class RegionAnnotation:
    """One annotated region; annotations are keyed by frame index (an image uses frame 0)."""

    masks: dict[int, MaskAnnotation] = field(default_factory=dict)  # frame -> mask
    boxes: dict[int, list[float]] = field(default_factory=dict)  # frame -> [x, y, w, h] in pixels
    points: dict[int, list[list[float]]] = field(default_factory=dict)  # frame -> [[x, y], ...]
    point_labels: dict[int, list[int]] = field(default_factory=dict)  # frame -> [1 | 0, ...]
    category: Text | None = None  # e.g. {"en": "tomato", "zh": "番茄"}
    definition: Text | None = None  # what the category is
    function: Text | None = None  # what it is used for
    short_caption: Text | None = None  # one short sentence about this region
    detailed_caption: Text | None = None  # a longer description of this region
    events: list[Event] = field(default_factory=list)  # video: captioned time spans, in order
    conversations: list[dict[str, str]] | None = None  # turns used as given: [{"role", "content"}]
    language: str | None = None  # language of `conversations`
    task: str | None = None  # task of `conversations` (a pam.processing.prompts.Task value or free text)
    extra: dict = field(default_factory=dict)  # anything else a source carries (ids, raw names, ...)

    def text(self, name: str, language: str) -> str | None:
        value = getattr(self, name)
        return None if value is None else value.get(language)

    def annotated_frames(self) -> list[int]:
        return sorted(set(self.masks) | set(self.boxes) | set(self.points))

    @classmethod
    def from_json(cls, value: Any, where: str, name: str, video: bool) -> RegionAnnotation:
        if not isinstance(value, dict):
            _fail(where, name, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - _REGION_KEYS)
        if unknown:
            _fail(where, f"{name}.{unknown[0]}", f"is not a region field; expected some of {sorted(_REGION_KEYS)}")
        wrong = [k for k in (("mask", "box") if video else ("masks", "boxes")) if k in value]
        if wrong and video:
            _fail(where, f"{name}.{wrong[0]}", "is an image field; a video region uses 'masks'/'boxes' keyed by frame")
        if wrong:
            _fail(where, f"{name}.{wrong[0]}", "is a video field; an image region uses 'mask'/'box'")
        if video:
            per_frame = {k: _frame_dict(value.get(k, {}), where, f"{name}.{k}") for k in _VIDEO_KEYS}
        else:
            per_frame = {v: ({0: value[k]} if k in value else {}) for k, v in _IMAGE_KEYS.items()}
        region = cls()
        for f, m in per_frame["masks"].items():
            region.masks[f] = MaskAnnotation.from_json(m, where, _fname(name, "masks", f, video))
        for f, b in per_frame["boxes"].items():
            fname = _fname(name, "boxes", f, video)
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(c, (int, float)) for c in b)):
                _fail(where, fname, f"must be [x, y, w, h] (4 numbers), got {b!r}")
            region.boxes[f] = [float(c) for c in b]
        if set(per_frame["point_labels"]) - set(per_frame["points"]):
            _fail(where, f"{name}.point_labels", "has frames without points")
        for f, pts in per_frame["points"].items():
            fname = _fname(name, "points", f, video)
            if not (
                isinstance(pts, list)
                and pts
                and all(
                    isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) for c in p) for p in pts
                )
            ):
                _fail(where, fname, f"must be a non-empty list of [x, y] pairs, got {pts!r}")
            labels = per_frame["point_labels"].get(f, [1] * len(pts))
            if not (
                isinstance(labels, list)
                and len(labels) == len(pts)
                and all(lab in (0, 1) and not isinstance(lab, bool) for lab in labels)
            ):
                _fail(
                    where, _fname(name, "point_labels", f, video), f"must list one 0/1 label per point, got {labels!r}"
                )
            region.points[f] = [[float(x), float(y)] for x, y in pts]
            region.point_labels[f] = list(labels)
        for t in TEXT_FIELDS:
            if value.get(t) is not None:
                setattr(region, t, parse_text(value[t], where, f"{name}.{t}"))
        events = value.get("events", [])
        if events and not video:
            _fail(where, f"{name}.events", "is for video records only")
        if not isinstance(events, list):
            _fail(where, f"{name}.events", "must be a list")
        region.events = [Event.from_json(e, where, f"{name}.events[{k}]") for k, e in enumerate(events)]
        if value.get("conversations") is not None:
            region.conversations = _parse_turns(value["conversations"], where, f"{name}.conversations")
        language = value.get("language")
        if language is not None and language not in LANGUAGES:
            _fail(where, f"{name}.language", f"must be one of {LANGUAGES}, got {language!r}")
        region.language = language
        task = value.get("task")
        if task is not None and not isinstance(task, str):
            _fail(where, f"{name}.task", f"must be a string, got {task!r}")
        region.task = task
        extra = value.get("extra", {})
        if not isinstance(extra, dict):
            _fail(where, f"{name}.extra", "must be a mapping")
        region.extra = dict(extra)
        return region

    def to_json(self, video: bool) -> dict:
        out: dict[str, Any] = {}
        per_frame = {
            "masks": {f: m.to_json() for f, m in sorted(self.masks.items())},
            "boxes": {f: list(b) for f, b in sorted(self.boxes.items())},
            "points": {f: [list(p) for p in pts] for f, pts in sorted(self.points.items())},
            "point_labels": {f: list(lab) for f, lab in sorted(self.point_labels.items())},
        }
        if video:
            for k in _VIDEO_KEYS:
                if per_frame[k]:
                    out[k] = {str(f): v for f, v in per_frame[k].items()}
        else:
            for k, v in _IMAGE_KEYS.items():
                if 0 in per_frame[v]:
                    out[k] = per_frame[v][0]
        for t in TEXT_FIELDS:
            if getattr(self, t) is not None:
                out[t] = text_to_json(getattr(self, t))
        if self.events:
            out["events"] = [e.to_json() for e in self.events]
        if self.conversations is not None:
            out["conversations"] = [dict(t) for t in self.conversations]
        if self.language is not None:
            out["language"] = self.language
        if self.task is not None:
            out["task"] = self.task
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass
class Record:
    """One image or video with its regions; exactly one of ``image``, ``video``, ``frames`` is set."""

    id: str  # unique record id
    regions: list[RegionAnnotation]  # annotated regions
    image: str | None = None  # image path
    video: str | None = None  # video file path (mp4)
    frames: list[str] | None = None  # frame paths, in order
    frames_root: str | None = None  # folder that `frames` are relative to
    height: int | None = None  # image / frame height in pixels, if known
    width: int | None = None  # image / frame width in pixels, if known
    source: str | None = None  # dataset of origin
    extra: dict = field(default_factory=dict)  # anything else to keep

    @property
    def media_type(self) -> str:
        return "image" if self.image is not None else "video"

    @classmethod
    def from_dict(cls, data: Any, where: str = "<record>") -> Record:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: a record must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _RECORD_KEYS)
        if unknown:
            _fail(
                where,
                unknown[0],
                f"is not a record field; expected some of {sorted(_RECORD_KEYS)} (put other data under 'extra')",
            )
        rid = data.get("id")
        if not isinstance(rid, str) or not rid:
            _fail(where, "id", f"must be a non-empty string, got {rid!r}")
        where = f"{where} (id {rid})"
        media = [k for k in ("image", "video", "frames") if data.get(k) is not None]
        if len(media) != 1:
            _fail(where, "image|video|frames", f"exactly one media field must be set, got {media or 'none'}")
        for k in ("image", "video", "frames_root", "source"):
            if data.get(k) is not None and (not isinstance(data[k], str) or not data[k]):
                _fail(where, k, f"must be a non-empty string, got {data[k]!r}")
        frames = data.get("frames")
        if frames is not None and not (
            isinstance(frames, list) and frames and all(isinstance(f, str) and f for f in frames)
        ):
            _fail(where, "frames", "must be a non-empty list of frame paths")
        if data.get("frames_root") is not None and frames is None:
            _fail(where, "frames_root", "is only meaningful together with 'frames'")
        for k in ("height", "width"):
            v = data.get(k)
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                _fail(where, k, f"must be a positive integer, got {v!r}")
        regions = data.get("regions")
        if not isinstance(regions, list):
            _fail(where, "regions", "must be a list of regions")
        video = media[0] != "image"
        parsed = [RegionAnnotation.from_json(r, where, f"regions[{k}]", video) for k, r in enumerate(regions)]
        if frames is not None:
            for k, region in enumerate(parsed):
                bad = [f for f in region.annotated_frames() + [e.end_frame for e in region.events] if f >= len(frames)]
                if bad:
                    _fail(where, f"regions[{k}]", f"refers to frame {bad[0]} but the record has {len(frames)} frames")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            _fail(where, "extra", "must be a mapping")
        return cls(
            id=rid,
            regions=parsed,
            image=data.get("image"),
            video=data.get("video"),
            frames=list(frames) if frames else None,
            frames_root=data.get("frames_root"),
            height=data.get("height"),
            width=data.get("width"),
            source=data.get("source"),
            extra=dict(extra),
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"id": self.id}
        for k in ("image", "video", "frames", "frames_root", "height", "width", "source"):
            v = getattr(self, k)
            if v is not None:
                out[k] = list(v) if k == "frames" else v
        out["regions"] = [r.to_json(video=self.media_type == "video") for r in self.regions]
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def resolved(self, root: str | os.PathLike | None) -> Record:
        """A copy whose media paths are absolute: relative paths are joined to ``root``.

        A relative path may not leave ``root`` (frame names: their ``frames_root``) by ``../``:
        :class:`PathEscapeError` names the record, field and path. Absolute paths are used as
        written (the dataset converters write them on purpose)."""
        if root is None:
            return self
        root = os.path.normpath(os.path.abspath(root))

        def join(path: str | None, name: str, base: str = root) -> str | None:
            if path is None or os.path.isabs(path):
                return None if path is None else os.path.normpath(path)
            full = os.path.normpath(os.path.join(base, path))
            if os.path.commonpath([base, full]) != base:
                raise PathEscapeError(f"record {self.id!r}: field `{name}` path {path!r} leaves the data root {base}")
            return full

        if self.frames is not None:
            base = join(self.frames_root or ".", "frames_root")
            frames = [join(f, f"frames[{k}]", base) for k, f in enumerate(self.frames)]
            return replace(self, frames=frames, frames_root=None)
        return replace(self, image=join(self.image, "image"), video=join(self.video, "video"))


def _frame_dict(value: Any, where: str, name: str) -> dict[int, Any]:
    if not isinstance(value, dict):
        _fail(where, name, f'must map frame index to value, like {{"0": ...}}, got {type(value).__name__}')
    out = {}
    for key, v in value.items():
        if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.isdigit())):
            _fail(where, f"{name}.{key}", "frame keys must be non-negative integers")
        out[int(key)] = v
    return dict(sorted(out.items()))


def _fname(region: str, key: str, frame: int, video: bool) -> str:
    if video:
        return f"{region}.{key}.{frame}"
    return f"{region}.{ {v: k for k, v in _IMAGE_KEYS.items()}[key] }"


def _parse_turns(value: Any, where: str, name: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        _fail(where, name, "must be a non-empty list of {'role', 'content'} turns")
    turns = []
    for k, turn in enumerate(value):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            _fail(where, f"{name}[{k}]", f"must be {{'role', 'content'}}, got {turn!r}")
        if turn["role"] not in ROLES:
            _fail(where, f"{name}[{k}].role", f"must be one of {ROLES}, got {turn['role']!r}")
        if not isinstance(turn["content"], str):
            _fail(where, f"{name}[{k}].content", "must be a string")
        turns.append({"role": turn["role"], "content": turn["content"]})
    if turns[-1]["role"] != "assistant":
        _fail(where, name, "must end with an assistant turn")
    return turns
