"""A small synthetic region dataset for the quick start: written in seconds on a CPU, deterministic.

The default is made to be learnable by PAM with a frozen, randomly initialised SAM 2, whose decoder
tokens say little about which region was prompted: one main object per image, large (30 to 60 % of
the side), unrotated, unoccluded, and each of the 8 categories with its own colour and its own
shape. Knobs in :class:`SyntheticConfig` make it harder (several objects, rotation, occlusion,
colours shared across categories).

Layout written under ``out_dir`` (paths in the JSONL files are relative to it)::

    train.jsonl  val.jsonl  test.jsonl                     image records
    train_video.jsonl  val_video.jsonl  test_video.jsonl   video records (mp4 and frame folders)
    images/{split}/{i:06d}.png
    videos/{split}/{i:06d}.mp4   or   videos/{split}/{i:06d}/{t:05d}.png
    info.json                                              the config and the category table

Texts: category, definition and function (EN + ZH), a short caption (EN + ZH) and a detailed
caption (EN) naming colour, size and position; videos add per-event captions (EN + ZH) naming the
colour, the shape, the category and the motion ("the red round tomato moves right"). A clip's
shape moves in 1 to 3 events, one motion each, and consecutive events differ, so every event
boundary is a change of velocity at the event's first frame (what the streaming boundary rule finds).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pam.data.readers import write_jsonl
from pam.data.schema import Event, MaskAnnotation, Record, RegionAnnotation
from pam.data.synthetic_shapes import (
    BACKGROUNDS,
    CATEGORIES,
    DISTRACTOR_RGB,
    SHAPE_WORDS,
    SHAPE_WORDS_ZH,
    SHAPES,
    Category,
    position_words,
    shape_mask,
    size_words,
)
from pam.data.video import write_video_mp4

SPLITS = ("train", "val", "test")
VIDEO_FORMATS = ("mp4", "frames", "mixed")
_POSITION_PHRASE = {
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
    "center": "in the center",
}
_MOTIONS = {"right": (1, 0, "向右"), "left": (-1, 0, "向左"), "up": (0, -1, "向上"), "down": (0, 1, "向下")}


@dataclass
class SyntheticConfig:
    seed: int = 0  # same seed, same files (byte-identical JSONL)
    num_train: int = 320  # train images
    num_val: int = 40  # validation images
    num_test: int = 40  # test images
    num_train_videos: int = 24  # train videos
    num_val_videos: int = 6  # validation videos
    num_test_videos: int = 6  # test videos
    image_size: tuple[int, int] = (256, 256)  # (height, width) of most images
    other_image_sizes: tuple[tuple[int, int], ...] = (
        (240, 320),
        (320, 240),
    )  # other (height, width) sizes, to exercise resizing
    other_size_fraction: float = 0.25  # share of images drawn at one of the other sizes
    video_size: tuple[int, int] = (128, 128)  # (height, width) of video frames; even numbers
    min_video_frames: int = 16  # shortest video
    max_video_frames: int = 32  # longest video
    min_video_object_size: float = 0.2  # smallest diameter of a video's object, as a share of the shorter side
    max_video_object_size: float = 0.32  # largest diameter of a video's object, as a share of the shorter side
    min_video_speed: float = 0.03  # slowest moving object, in shares of the shorter side per frame
    max_video_speed: float = (
        0.04  # fastest moving object (each event's speed may drop where the shape runs out of room)
    )
    min_event_frames: int = 6  # shortest event (one motion); a video holds 1 to 3 events, 1 if shorter than 2 of them
    video_format: str = "mixed"  # "mp4", "frames" (PNG folders) or "mixed" (alternating)
    fps: int = 8  # mp4 frame rate
    num_categories: int = 8  # how many of the built-in categories to use (at most 8)
    objects_per_image: int = 1  # annotated objects per image
    max_distractors: int = 1  # up to this many small grey unannotated shapes per image / video
    min_object_size: float = 0.3  # smallest object diameter, as a share of the shorter image side
    max_object_size: float = 0.6  # largest object diameter, as a share of the shorter image side
    max_rotation: float = 0.0  # objects turn by up to this many degrees either way
    allow_occlusion: bool = False  # objects may overlap (later ones hide earlier ones)
    shared_colors: bool = False  # each object takes a random category colour instead of its own

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        self.other_image_sizes = tuple(tuple(s) for s in self.other_image_sizes)
        self.video_size = tuple(self.video_size)
        for name in ("num_train", "num_val", "num_test", "num_train_videos", "num_val_videos", "num_test_videos"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.num_train + self.num_train_videos == 0:
            raise ValueError("num_train and num_train_videos are both 0: the train split would be empty")
        for name in ("image_size", "video_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 16:
                raise ValueError(f"{name} must be (height, width) with both >= 16, got {size}")
        if any(len(s) != 2 or min(s) < 16 for s in self.other_image_sizes):
            raise ValueError(
                f"other_image_sizes must hold (height, width) pairs with both >= 16, got {self.other_image_sizes}"
            )
        if not 0.0 <= self.other_size_fraction <= 1.0:
            raise ValueError(f"other_size_fraction must lie in [0, 1], got {self.other_size_fraction}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if not 0 < self.min_video_object_size <= self.max_video_object_size <= 0.6:
            raise ValueError("need 0 < min_video_object_size <= max_video_object_size <= 0.6")
        if not 0 < self.min_video_speed <= self.max_video_speed <= 0.2:
            raise ValueError("need 0 < min_video_speed <= max_video_speed <= 0.2")
        if self.min_event_frames < 2:  # a clip shorter than two such events holds one event
            raise ValueError(f"min_event_frames must be >= 2, got {self.min_event_frames}")
        if not 1 <= self.num_categories <= len(CATEGORIES):
            raise ValueError(f"num_categories must lie in [1, {len(CATEGORIES)}], got {self.num_categories}")
        if not 0 < self.min_object_size <= self.max_object_size <= 0.95:
            raise ValueError("need 0 < min_object_size <= max_object_size <= 0.95")
        if not 2 <= self.min_video_frames <= self.max_video_frames:
            raise ValueError("need 2 <= min_video_frames <= max_video_frames")
        if self.video_size[0] % 2 or self.video_size[1] % 2:
            raise ValueError(f"video_size must be even (H.264), got {self.video_size}")
        if self.video_format not in VIDEO_FORMATS:
            raise ValueError(f"video_format must be one of {VIDEO_FORMATS}, got {self.video_format!r}")
        if self.objects_per_image < 1 or self.max_distractors < 0:
            raise ValueError("objects_per_image must be >= 1 and max_distractors >= 0")


def position_phrase(position: str) -> str:
    return f"{_POSITION_PHRASE.get(position, f'in the {position}')} of the image"


def _rng(config: SyntheticConfig, split: str, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, SPLITS.index(split), ("image", "video").index(kind), index])


def _place(rng: np.random.Generator, diameter: float, height: int, width: int) -> tuple[float, float]:
    r = diameter / 2
    return float(rng.uniform(r + 1, width - r - 1)), float(rng.uniform(r + 1, height - r - 1))


def _distractors(rng: np.random.Generator, config: SyntheticConfig, height: int, width: int) -> list[np.ndarray]:
    out = []
    for _ in range(int(rng.integers(0, config.max_distractors + 1))):
        diameter = float(rng.uniform(0.08, 0.14)) * min(height, width)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        out.append(shape_mask(shape, _place(rng, diameter, height, width), diameter / 2, height, width))
    return out


def _colour(rng: np.random.Generator, config: SyntheticConfig, category: Category) -> Category:
    """The category drawn in its own colour, or (shared_colors) in another category's colour."""
    if not config.shared_colors:
        return category
    other = CATEGORIES[int(rng.integers(config.num_categories))]
    return dataclasses.replace(category, color=other.color, color_zh=other.color_zh, rgb=other.rgb)


def _image_texts(cat: Category, mask: np.ndarray, fraction: float, background: str, num_distractors: int) -> dict:
    size_en, size_zh = size_words(fraction)
    pos_en, pos_zh = position_words(mask)
    where = position_phrase(pos_en)
    beside = (
        f", beside {num_distractors} small grey shape{'s' if num_distractors > 1 else ''}" if num_distractors else ""
    )
    return {
        "category": {"en": cat.name, "zh": cat.zh},
        "definition": {"en": cat.definition, "zh": cat.definition_zh},
        "function": {"en": cat.function, "zh": cat.function_zh},
        "short_caption": {
            "en": f"a {size_en} {cat.color} {cat.name} {where}",
            "zh": f"一个{size_zh}的{cat.color_zh}{cat.zh}，位于图像{pos_zh}",
        },
        "detailed_caption": {
            "en": f"A {size_en} {cat.color} {cat.name} {where}. It is {SHAPE_WORDS[cat.shape]} and stands out against "
            f"the plain {background} background{beside}. A {cat.name} is {cat.definition}."
        },
    }


def make_image_record(config: SyntheticConfig, split: str, index: int) -> tuple[Record, np.ndarray]:
    """One image record (paths relative to the output folder) and its RGB pixels."""
    rng = _rng(config, split, "image", index)
    height, width = config.image_size
    if config.other_image_sizes and rng.random() < config.other_size_fraction:
        height, width = config.other_image_sizes[int(rng.integers(len(config.other_image_sizes)))]
    bg_name, bg_rgb = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = bg_rgb
    distractors = _distractors(rng, config, height, width)
    for m in distractors:
        pixels[m] = DISTRACTOR_RGB
    objects: list[tuple[Category, np.ndarray, float]] = []
    taken = np.zeros((height, width), bool)
    for _ in range(config.objects_per_image):
        cat = _colour(rng, config, CATEGORIES[int(rng.integers(config.num_categories))])
        fraction = float(rng.uniform(config.min_object_size, config.max_object_size))
        diameter = fraction * min(height, width)
        angle = float(rng.uniform(-config.max_rotation, config.max_rotation)) if config.max_rotation else 0.0
        for _attempt in range(50):
            mask = shape_mask(cat.shape, _place(rng, diameter, height, width), diameter / 2, height, width, angle)
            if config.allow_occlusion or not (mask & taken).any():
                break
            diameter *= 0.95  # no room: shrink a little and try again
        fraction = diameter / min(height, width)
        objects = [(c, m & ~mask, f) for c, m, f in objects]  # a later object hides what it covers
        objects.append((cat, mask, fraction))
        taken |= mask
        pixels[mask] = cat.rgb
    regions = []
    for cat, mask, fraction in objects:
        if not mask.any():
            continue  # fully hidden by later objects
        texts = _image_texts(cat, mask, fraction, bg_name, len(distractors))
        regions.append(
            RegionAnnotation(
                masks={0: MaskAnnotation.from_mask(mask)},
                extra={"shape": cat.shape, "color": cat.color, "rgb": list(cat.rgb)},
                **texts,
            )
        )
    record = Record(
        id=f"synthetic/{split}/{index:06d}",
        image=f"images/{split}/{index:06d}.png",
        height=height,
        width=width,
        source="synthetic",
        regions=regions,
    )
    return record, pixels


def _plan_events(rng: np.random.Generator, num_frames: int, min_frames: int) -> list[tuple[int, int]]:
    """1 to 3 consecutive events of at least ``min_frames`` frames covering the clip."""
    n = max(1, min(int(rng.integers(1, 4)), num_frames // min_frames))
    cuts = (
        sorted(rng.choice(np.arange(min_frames, num_frames - min_frames + 1), size=n - 1, replace=False).tolist())
        if n > 1
        else []
    )
    bounds = [0] + cuts + [num_frames]
    if any(b - a < min_frames for a, b in zip(bounds, bounds[1:])):
        bounds = [round(k * num_frames / n) for k in range(n + 1)]
    return [(bounds[k], bounds[k + 1] - 1) for k in range(n)]


def _choose_motion(rng: np.random.Generator, previous: str | None, room: dict[str, float], travel: float) -> str:
    """The next event's motion: always different from the previous one (so every event boundary is a
    change of velocity), never "still" twice, and a direction only where the shape has room."""
    movers = [m for m in _MOTIONS if m != previous and room[m] >= travel]
    if previous != "still" and (not movers or rng.random() < 0.25):
        return "still"
    if movers:
        return movers[int(rng.integers(len(movers)))]
    return max(
        (m for m in _MOTIONS if m != previous), key=lambda m: room[m]
    )  # the most room; the caller slows down to fit


def video_event_caption(cat: Category, motion: str, first: bool) -> dict[str, str]:
    """An event's caption naming the colour, the shape, the category and the motion."""
    if motion == "still":
        en, zh = ("stays still", "保持不动") if first else ("stops", "停了下来")
    else:
        en, zh = f"moves {motion}", f"{_MOTIONS[motion][2]}移动"
    return {
        "en": f"the {cat.color} {SHAPE_WORDS[cat.shape]} {cat.name} {en}",
        "zh": f"{cat.color_zh}的{SHAPE_WORDS_ZH[cat.shape]}{cat.zh}{zh}",
    }


def make_video_record(config: SyntheticConfig, split: str, index: int) -> tuple[Record, np.ndarray]:
    """One video record (paths relative to the output folder) and its (T, H, W, 3) frames. The shape
    moves in 1 to 3 events; each event is one motion (right, left, up, down or still) at one speed,
    and consecutive events differ, so every event boundary is a change of velocity."""
    rng = _rng(config, split, "video", index)
    height, width = config.video_size
    num_frames = int(rng.integers(config.min_video_frames, config.max_video_frames + 1))
    bg_name, bg_rgb = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    cat = _colour(rng, config, CATEGORIES[int(rng.integers(config.num_categories))])
    fraction = float(rng.uniform(config.min_video_object_size, config.max_video_object_size))
    diameter = fraction * min(height, width)
    angle = float(rng.uniform(-config.max_rotation, config.max_rotation)) if config.max_rotation else 0.0
    x, y = _place(rng, diameter, height, width)
    r = diameter / 2 + 1
    speed = float(rng.uniform(config.min_video_speed, config.max_video_speed)) * min(height, width)
    events, centers, previous = [], [], None
    for start, end in _plan_events(rng, num_frames, config.min_event_frames):
        steps = end - start + 1
        room = {"right": width - r - x, "left": x - r, "down": height - r - y, "up": y - r}
        motion = _choose_motion(rng, previous, room, speed * steps)
        step_speed = 0.0 if motion == "still" else min(speed, max(room[motion], 0.0) / steps)
        dx, dy, _ = _MOTIONS.get(motion, (0, 0, ""))
        for t in range(
            start, end + 1
        ):  # frame t's velocity is its event's: c_t - c_(t-1) changes exactly at an event start
            if t > 0:
                x, y = x + dx * step_speed, y + dy * step_speed
            centers.append((x, y))
        events.append((start, end, motion))
        previous = motion
    background = np.empty((height, width, 3), np.uint8)
    background[:] = bg_rgb
    distractors = _distractors(rng, config, height, width)
    for m in distractors:
        background[m] = DISTRACTOR_RGB
    frames, masks = [], {}
    for t, center in enumerate(centers):
        mask = shape_mask(cat.shape, center, diameter / 2, height, width, angle)
        frame = background.copy()
        frame[mask] = cat.rgb
        frames.append(frame)
        masks[t] = MaskAnnotation.from_mask(mask)
    event_objs = [
        Event(start, end, video_event_caption(cat, motion, k == 0)) for k, (start, end, motion) in enumerate(events)
    ]
    phrases_en = [e.caption["en"].split(f" {cat.name} ", 1)[1] for e in event_objs]
    phrases_zh = [e.caption["zh"].split(cat.zh, 1)[1] for e in event_objs]
    size_en, size_zh = size_words(fraction)
    first_pos = position_words(masks[0].decode())[0]
    last_pos = position_words(masks[num_frames - 1].decode())[0]
    shape_en, shape_zh = SHAPE_WORDS[cat.shape], SHAPE_WORDS_ZH[cat.shape]
    region = RegionAnnotation(
        masks=masks,
        category={"en": cat.name, "zh": cat.zh},
        definition={"en": cat.definition, "zh": cat.definition_zh},
        function={"en": cat.function, "zh": cat.function_zh},
        short_caption={
            "en": f"a {size_en} {cat.color} {shape_en} {cat.name} that {', then '.join(phrases_en)}",
            "zh": f"一个{size_zh}的{cat.color_zh}{shape_zh}{cat.zh}，{'，然后'.join(phrases_zh)}",
        },
        detailed_caption={
            "en": f"A {size_en} {cat.color} {shape_en} {cat.name} on a plain {bg_name} background. "
            f"It starts {position_phrase(first_pos)}, "
            f"{', then '.join(phrases_en)}, and ends {position_phrase(last_pos)}."
        },
        events=event_objs,
        extra={"shape": cat.shape, "color": cat.color, "rgb": list(cat.rgb), "motions": [m for _, _, m in events]},
    )
    as_mp4 = config.video_format == "mp4" or (config.video_format == "mixed" and index % 2 == 0)
    stem = f"videos/{split}/{index:06d}"
    media = (
        {"video": f"{stem}.mp4"}
        if as_mp4
        else {"frames": [f"{t:05d}.png" for t in range(num_frames)], "frames_root": stem}
    )
    record = Record(
        id=f"synthetic/{split}_video/{index:06d}",
        height=height,
        width=width,
        source="synthetic",
        regions=[region],
        **media,
    )
    return record, np.stack(frames)


def generate_quickstart(out_dir: str, config: SyntheticConfig | None = None) -> dict[str, str]:
    """Write the dataset under ``out_dir``; returns ``{"train": path, ..., "train_video": path, ...}``."""
    config = config or SyntheticConfig()
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for split in SPLITS:
        records = []
        for i in range(getattr(config, f"num_{split}")):
            record, pixels = make_image_record(config, split, i)
            path = os.path.join(out_dir, record.image)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(pixels).save(path, compress_level=1)
            records.append(record)
        written[split] = os.path.join(out_dir, f"{split}.jsonl")
        write_jsonl(written[split], records)
        records = []
        for i in range(getattr(config, f"num_{split}_videos")):
            record, frames = make_video_record(config, split, i)
            if record.video is not None:
                write_video_mp4(os.path.join(out_dir, record.video), frames, fps=config.fps)
            else:
                folder = os.path.join(out_dir, record.frames_root)
                os.makedirs(folder, exist_ok=True)
                for name, frame in zip(record.frames, frames):
                    Image.fromarray(frame).save(os.path.join(folder, name), compress_level=1)
            records.append(record)
        written[f"{split}_video"] = os.path.join(out_dir, f"{split}_video.jsonl")
        write_jsonl(written[f"{split}_video"], records)
    info = {
        "config": dataclasses.asdict(config),
        "categories": [dataclasses.asdict(c) for c in CATEGORIES[: config.num_categories]],
        "files": {k: os.path.basename(v) for k, v in written.items()},
    }
    with open(os.path.join(out_dir, "info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=2)
    return written
