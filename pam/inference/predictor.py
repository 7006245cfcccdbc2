"""The inference API: regions of images, a tracked video region, streamed event captions.

    predictor = PAMPredictor.from_pretrained("checkpoints/pam-export")   # or a released folder
    [r] = predictor.predict(image, [{"box": [x0, y0, x1, y1]}], tasks=["category", "short_caption"])
    r.mask, r.rle, r.score, r.texts, r.fields
    [r] = predictor.predict(image, [{"box": [...]}], prompt="What is this region used for?")   # r.texts["prompt"]
    video = predictor.predict_video("clip.mp4", {"box": [...]}, frame_index=0)
    for event in predictor.stream("clip.mp4", {"box": [...]}): ...

Inputs are validated before any model work (:mod:`pam.inference.regions`). Every image is
encoded by SAM 2 once for all its regions and tasks. Settings that change what the released
weights produce (SAM 2 tracking preset, resize) live in the model config; decoding and precision
here: ``generation`` (:mod:`pam.inference.generation`; upstream's sampling by default, greedy on
request) and ``vision_dtype`` ("auto": bf16 autocast for SAM 2, perceiver and projectors on a GPU,
as upstream runs them, fp32 on a CPU).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch

from ..api import load_pam, load_released_pam
from ..modeling.pam import RegionResult
from ..processing.collator import PAMCollator
from ..processing.prompts import IMAGE_PLACEHOLDER, LANGUAGES, Task, task_prompt
from ..utils.layout import select_frames
from ..utils.masks import mask_to_box
from .generation import GenerationSettings, resolve_generation
from .regions import Region, TaskError, check_tasks, load_rgb
from .results import RegionPrediction, StreamEvent, VideoPrediction, parse_fields
from .video_input import load_video

log = logging.getLogger(__name__)

__all__ = ["PAMPredictor", "PromptError", "StreamEvent", "mask_to_box", "prompt_turn", "resolve_vision_dtype"]

PROMPT_KEY = "prompt"  # the key of a free-text answer in RegionPrediction.texts


class PromptError(TaskError):
    """A free-text prompt is empty, malformed, or given together with tasks / a caption history."""


def prompt_turn(prompt) -> str:
    """The user turn for a free-text ``prompt``: the image placeholder on its own line, then the
    text, as the task prompts are laid out; a prompt holding the placeholder once keeps it where it is."""
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError("prompt is empty; give the question to ask about the region")
    n = prompt.count(IMAGE_PLACEHOLDER)
    if n > 1:
        raise PromptError(f"prompt holds the image placeholder {IMAGE_PLACEHOLDER!r} {n} times; at most once (where the region's visual tokens go)")
    return prompt if n == 1 else f"{IMAGE_PLACEHOLDER}\n{prompt}"


def _tasks_or_prompt(tasks, prompt, default=("detailed_caption",)):
    """``(tasks, None)`` or ``(None, user turn)``: tasks and a prompt exclude each other; with
    neither, the default task."""
    if prompt is not None:
        if tasks is not None:
            raise PromptError(f"give tasks or a prompt, not both (tasks={list(tasks) if not isinstance(tasks, str) else tasks!r})")
        return None, prompt_turn(prompt)
    return (default if tasks is None else tasks), None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_vision_dtype(vision_dtype: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 on CUDA (upstream runs SAM 2, perceiver and projectors in bf16), else float32."""
    if vision_dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if vision_dtype not in table:
        raise ValueError(f"vision_dtype must be auto, float32 or bfloat16, got {vision_dtype!r}")
    return table[vision_dtype]


def read_model_config(path: str | Path):
    """A PAMConfig from a ``.json`` (``pam_config.json``) or ``.yaml`` file (``configs/model/*.yaml``)."""
    from ..modeling.config import PAMConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model config {path} not found")
    if path.suffix in (".yaml", ".yml"):
        from ..utils.config import load_group_yaml

        return PAMConfig.from_dict(load_group_yaml(path, schema=PAMConfig().to_dict()))
    return PAMConfig.load(path)


def load_bundle(path: str | Path, *, device: str = "cpu", sam2_checkpoint: str | None = None, base_config=None):
    """A PAM checkpoint or export (``meta.json``), or a released folder (``config.json`` of type
    ``llava_qwen``), loaded through the matching adapter; ``base_config`` (a PAMConfig or a file)
    gives a released folder's non-LLM settings (default: the paper's)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    if (path / "meta.json").is_file():
        return load_pam(path, device=device)
    if (path / "config.json").is_file():
        if base_config is not None and not hasattr(base_config, "sam2"):
            base_config = read_model_config(base_config)
        bundle = load_released_pam(path, sam2_checkpoint=sam2_checkpoint, base=base_config)
        bundle.model.to(device)
        return bundle
    raise FileNotFoundError(f"{path}: neither a PAM checkpoint (meta.json) nor a released PAM folder (config.json)")


class PAMPredictor:
    def __init__(
        self,
        bundle,
        *,
        generation: GenerationSettings | None = None,
        vision_dtype: str = "auto",
        batch_size: int = 8,
        max_tracked_frames: int | None = None,
        max_new_tokens: int | None = None,
        generation_kwargs: dict | None = None,
        progress: bool = False,
    ):
        """``max_new_tokens`` / ``generation_kwargs`` are the earlier API: with either and no
        ``generation``, decoding is greedy (as it was) with those keywords on top."""
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.processor = bundle.processor
        if generation is None:
            generation = GenerationSettings.greedy(max_new_tokens or 128) if (max_new_tokens or generation_kwargs) else GenerationSettings()
        self.generation = generation.validate()
        self.extra_generation_kwargs = dict(generation_kwargs or {})
        self.vision_dtype = resolve_vision_dtype(vision_dtype, self.model.device)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.max_tracked_frames = max_tracked_frames
        self.progress = progress  # tqdm bars on stderr for batched generation and tracking
        self.collate = PAMCollator(bundle.processor, for_generation=True)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        greedy: bool = False,
        sam2_checkpoint: str | None = None,
        base_config=None,
        generation: dict | None = None,
        **kwargs,
    ) -> PAMPredictor:
        """Load ``path`` (PAM checkpoint, export or released folder); decoding settings from the
        folder's generation_config.json (when present) under upstream's explicit values, then
        ``generation`` overrides; ``greedy=True`` decodes greedily."""
        dev = resolve_device(device)
        bundle = load_bundle(path, device=str(dev), sam2_checkpoint=sam2_checkpoint, base_config=base_config)
        settings = resolve_generation(path, greedy=greedy, **(generation or {}))
        return cls(bundle, generation=settings, **kwargs)

    # ----- model calls ----------------------------------------------------------------------------
    @property
    def max_new_tokens(self) -> int:
        return self.generation.max_new_tokens

    @property
    def generation_kwargs(self) -> dict:
        return {**self.generation.model_kwargs(), **self.extra_generation_kwargs}

    def autocast(self):
        """bf16 autocast for the visual path when ``vision_dtype`` is bfloat16."""
        if self.vision_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.model.device.type, dtype=self.vision_dtype)

    def _seed(self) -> None:
        if self.generation.do_sample and self.generation.seed is not None:
            torch.manual_seed(self.generation.seed)

    def _generate(self, samples: list[dict]) -> list[RegionResult]:
        out: list[RegionResult] = []
        starts = range(0, len(samples), self.batch_size)
        if self.progress and len(starts) > 1:
            from tqdm import tqdm

            starts = tqdm(starts, desc="generating", unit="batch")
        for i in starts:
            batch = self.collate(samples[i : i + self.batch_size])
            self._seed()
            with self.autocast():
                out += self.model.generate(
                    **batch, tokenizer=self.bundle.tokenizer, max_new_tokens=self.max_new_tokens, generation_kwargs=self.generation_kwargs
                )
        return out

    @torch.no_grad()
    def generate_samples(self, samples: list[dict]) -> list[RegionResult]:
        """Text, mask and score for sample dicts in the dataset/collator format (``media_type``,
        ``pixels``, ``prompt``, ``turns`` ending with the user turn), ``batch_size`` at a time: for
        harnesses that build their own turns (evaluation of dataset samples)."""
        for s in samples:
            if not s.get("turns") or s["turns"][-1]["role"] != "user":
                raise ValueError(f"sample {s.get('id')!r}: turns must end with the user turn to answer")
        return self._generate(samples)

    # ----- images ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, image, regions, tasks=None, language: str = "en", *, prompt: str | None = None) -> list[RegionPrediction]:
        """Mask, score, text per task and parsed fields for each region of one image.

        ``tasks`` (default ``["detailed_caption"]``) or a free-text ``prompt`` (not both): a prompt's
        raw answer is ``texts["prompt"]`` and ``fields`` stays empty."""
        return self.predict_batch([(image, regions)], tasks=tasks, language=language, prompt=prompt)[0]

    @torch.no_grad()
    def predict_batch(self, items, tasks=None, language: str = "en", *, prompt: str | None = None) -> list[list[RegionPrediction]]:
        """:meth:`predict` over many ``(image, regions)`` pairs, batched ``batch_size`` sequences
        at a time. Everything is validated before the first model call."""
        tasks, user = _tasks_or_prompt(tasks, prompt)
        if user is None:
            tasks = check_tasks(tasks, language)
            turns = {t: task_prompt(t, language) for t in tasks}
        else:
            if language not in LANGUAGES:
                raise TaskError(f"unknown language {language!r}; expected one of {list(LANGUAGES)}")
            tasks, turns = [PROMPT_KEY], {PROMPT_KEY: user}
        checked = []
        for j, (image, regions) in enumerate(items):
            name = "image" if len(items) == 1 else f"image {j}"
            rgb = load_rgb(image, name)
            if isinstance(regions, (dict, Region)):
                regions = [regions]
            if not regions:
                raise ValueError(f"{name}: give at least one region")
            prefix = "" if len(items) == 1 else f"{name} "
            rs = [Region.from_any(r, f"{prefix}region {i}").checked(rgb.shape[:2], f"{prefix}region {i}") for i, r in enumerate(regions)]
            checked.append((rgb, rs))
        samples, where = [], []
        for j, (rgb, rs) in enumerate(checked):
            for i, r in enumerate(rs):
                for t in tasks:
                    samples.append(self._image_sample(f"{j}/{i}/{t}", f"image{j}", rgb, r, turns[t]))
                    where.append((j, i, t))
        results = self._generate(samples)
        texts: dict[tuple[int, int], dict[str, str]] = {}
        first: dict[tuple[int, int], RegionResult] = {}
        for (j, i, t), res in zip(where, results):
            texts.setdefault((j, i), {})[t] = res.text
            first.setdefault((j, i), res)
        out = []
        for j, (_rgb, rs) in enumerate(checked):
            preds = []
            for i, r in enumerate(rs):
                fields: dict = {}
                for t, text in texts[(j, i)].items():
                    if t == PROMPT_KEY:
                        continue  # free text: nothing to parse
                    fields.update({k: v for k, v in parse_fields(t, text, language).items() if v is not None or k not in fields})
                res = first[(j, i)]
                preds.append(RegionPrediction(mask=res.mask.cpu().numpy(), score=res.score, texts=texts[(j, i)], fields=fields, region=r.to_json()))
            out.append(preds)
        return out

    @staticmethod
    def _image_sample(sample_id: str, key: str, rgb: np.ndarray, region: Region, user: str) -> dict:
        return {"id": sample_id, "media_type": "image", "image_key": key, "pixels": rgb, "prompt": region.prompt_dict(), "turns": [{"role": "user", "content": user}]}

    # ----- video ----------------------------------------------------------------------------------
    def _video_frames(self, video, frame_index: int) -> tuple[np.ndarray, list[int]]:
        frames, indices = load_video(video, max_frames=self.max_tracked_frames, start=frame_index)
        return frames, indices

    @torch.no_grad()
    def predict_video(
        self, video, region, *, frame_index: int = 0, language: str = "en", history: str | None = None, prompt: str | None = None
    ) -> VideoPrediction:
        """Caption one region given on frame ``frame_index`` and tracked by SAM 2 through the rest of
        the clip (all of it, or ``max_tracked_frames`` spread evenly); the LLM then sees frame 0
        and ``video_num_frames - 1`` frames spread over the tracked ones, as upstream.

        ``prompt``: ask this free-text question instead of the caption task (``text`` is the raw
        answer); it excludes ``history``, which belongs to the caption prompt."""
        user = self._video_turn(language, history, prompt)
        frames, indices = self._video_frames(video, frame_index)
        r = Region.from_any(region, "region").checked(frames.shape[1:3], "region")
        sample = {
            "id": "video",
            "media_type": "video",
            "image_key": "video",
            "pixels": frames,
            "prompt": r.prompt_dict(),
            "turns": [{"role": "user", "content": user}],
        }
        res = self._generate([sample])[0]
        llm = select_frames(len(indices), self.model.config.video_num_frames)
        return VideoPrediction(text=res.text, masks=res.mask.cpu().numpy(), frame_indices=indices, llm_frames=[indices[k] for k in llm], score=res.score)

    @staticmethod
    def _video_turn(language: str, history: str | None, prompt: str | None) -> str:
        check_tasks([Task.VIDEO_CAPTION.value], language, allowed=(Task.VIDEO_CAPTION.value,))
        if prompt is None:
            return task_prompt(Task.VIDEO_CAPTION, language, history=history)
        if history is not None:
            raise PromptError("give a prompt or a caption history, not both (the history belongs to the caption prompt)")
        return prompt_turn(prompt)

    def stream(self, video, region, *, frame_index: int = 0, language: str = "en", boundaries=None, progress: bool = False):
        """Yield :class:`StreamEvent` s for one region tracked with a single SAM 2 state over the
        whole video; events are cut by :class:`~pam.inference.events.BoundaryRule` (automatic
        motion change points by default, or fixed windows) and each caption is conditioned on the
        previous one."""
        from .events import BoundaryRule
        from .streaming import stream_events

        if isinstance(boundaries, str):
            boundaries = BoundaryRule(mode=boundaries)
        check_tasks([Task.VIDEO_CAPTION.value], language, allowed=(Task.VIDEO_CAPTION.value,))
        frames, indices = self._video_frames(video, frame_index)
        r = Region.from_any(region, "region").checked(frames.shape[1:3], "region")
        yield from stream_events(self, frames, indices, r, language=language, rule=boundaries, progress=progress or self.progress)

    # ----- the earlier API (kept for callers in pam.eval / pam.serve) --------------------------------
    @torch.no_grad()
    def describe_image(
        self, image: np.ndarray, regions: list[dict], task: str | None = None, language: str = "en", *, prompt: str | None = None
    ) -> list[RegionResult]:
        """Text, mask and score for each region of one RGB ``image`` (one SAM 2 encode): the
        ``task`` (default detailed_caption) or a free-text ``prompt``, not both. Regions are not
        checked against the image (benchmark boxes may touch its border)."""
        image = np.asarray(image)
        task, user = _tasks_or_prompt(task, prompt, default="detailed_caption")
        user = user or task_prompt(task, language)
        samples = [self._image_sample(f"region{i}", "image", image, Region.from_any(r, f"region {i}"), user) for i, r in enumerate(regions)]
        for s in samples:
            s["prompt"] = {k: None if v is None else np.asarray(v) for k, v in s["prompt"].items()}
        return self._generate(samples)

    @torch.no_grad()
    def describe_video(
        self, frames: np.ndarray, region: dict, language: str = "en", history: str | None = None, *, prompt: str | None = None
    ) -> RegionResult:
        """Caption one region tracked from frame 0 through ``frames`` (T, H, W, 3), or answer a
        free-text ``prompt`` about it (not with ``history``)."""
        user = self._video_turn(language, history, prompt)
        region = Region.from_any(region, "region")
        sample = {
            "id": "video",
            "media_type": "video",
            "image_key": "video",
            "pixels": np.asarray(frames),
            "prompt": {k: None if v is None else np.asarray(v) for k, v in region.prompt_dict().items()},
            "turns": [{"role": "user", "content": user}],
        }
        return self._generate([sample])[0]

    @torch.no_grad()
    def stream_video(self, frames: np.ndarray, prompt: dict, *, segment_length: int = 32, language: str = "en") -> list[StreamEvent]:
        """Fixed windows of ``segment_length`` frames over one tracking state (see :meth:`stream`)."""
        from .events import BoundaryRule

        rule = BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=segment_length)
        return list(self.stream(np.asarray(frames), prompt, language=language, boundaries=rule))
