"""Builders shared by the tests: the debug-size PAM config, synthetic images, masks and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pam.modeling.config import PAMConfig
from pam.processing.prompts import task_prompt

ROOT = Path(__file__).resolve().parents[2]


def group_config(group: str, name: str) -> dict:
    """``configs/<group>/<name>.yaml`` composed by Hydra (schema defaults included), as a dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import pam.train.config  # noqa: F401  (registers the schema defaults)

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(overrides=[f"+{group}={name}"])
    return OmegaConf.to_container(cfg[group], resolve=True)


def debug_config(**overrides) -> PAMConfig:
    data = group_config("model", "debug")
    for dotted, value in overrides.items():
        node = data
        *head, last = dotted.split(".")
        for k in head:
            node = node[k]
        node[last] = value
    return PAMConfig.from_dict(data)


def synthetic_image(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    img = (rng.rand(h, w, 3) * 60).astype(np.uint8)
    img[40:130, 50:190] = (220, 30, 30)
    img[120:180, 200:280] = (30, 30, 220)
    return img


def image_sample(
    sample_id: str, prompt: dict, answer: str = "tomato", image=None, key: str = "img0", task: str = "category"
) -> dict:
    image = synthetic_image() if image is None else image
    full = {"points": None, "point_labels": None, "box": None, "mask": None}
    full.update(prompt)
    return {
        "id": sample_id,
        "media_type": "image",
        "image_key": key,
        "pixels": image,
        "prompt": full,
        "turns": [{"role": "user", "content": task_prompt(task)}, {"role": "assistant", "content": answer}],
        "meta": {},
        "skipped": [],
    }


def region_mask(h: int = 200, w: int = 300) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[40:130, 50:190] = True
    return m


def video_sample(sample_id: str = "v", num_frames: int = 6, seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    frames = (rng.rand(num_frames, 96, 128, 3) * 60).astype(np.uint8)
    for t in range(num_frames):
        frames[t, 20:60, 10 + 5 * t : 50 + 5 * t] = (230, 40, 40)
    sample = image_sample(
        sample_id,
        {"box": np.array([10.0, 20.0, 50.0, 60.0])},
        answer="the red square moves right",
        key=f"video-{sample_id}",
    )
    sample.update(media_type="video", pixels=frames)
    sample["turns"][0]["content"] = task_prompt("video_caption")
    return sample


def write_square_jpegs(folder: Path, num_frames: int, size: int) -> list[np.ndarray]:
    """A red square moving 15 px right per frame, written as ``00000.jpg`` ... (sam2's video-folder
    layout); returns the frames as read back from the JPEGs."""
    from PIL import Image

    frames = []
    for t in range(num_frames):
        img = np.full((size, size, 3), 20, np.uint8)
        img[60:140, 40 + 15 * t : 120 + 15 * t] = (230, 40, 40)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)
        frames.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    return frames
