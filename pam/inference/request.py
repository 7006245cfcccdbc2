"""The one request type of every front-end: a region prompt on an image or a video, what to ask
about it, and how long the answer may be.

A :class:`RegionRequest` is validated once (:meth:`RegionRequest.checked`); each error is an
:class:`~pam.inference.regions.InputError` whose ``field`` names the request field
(``region.box``, ``region.points[1]``, ``task``, ``question``, ``max_new_tokens``...). Front-ends
only map their own input onto it: the server's JSON layer maps these field names back onto JSON
paths, so its 400 messages name the JSON path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..processing.chat import EOS_TOKENS, IM_START
from ..processing.prompts import IMAGE_PLACEHOLDER, IMAGE_TASKS, QUESTION_KEY, VIDEO_TASKS, Task, task_prompt
from .regions import ImageInputError, InputError, Region, RegionError, TaskError, check_language, load_rgb


class QuestionError(TaskError):
    """A free question is empty or malformed, or given together with a task / a caption history."""


CONTROL_TOKENS = (IM_START, *EOS_TOKENS)  # the chat template's own markers: never in a question


def question_turn(question, placeholder: str = IMAGE_PLACEHOLDER) -> str:
    """The user turn for a free ``question``: the image placeholder on its own line, then the
    text, as the task prompts are laid out; a question holding the placeholder once keeps it where it is."""
    if not isinstance(question, str):
        raise QuestionError(f"question must be a string, got {type(question).__name__}", "question")
    if not question.strip():
        raise QuestionError("question is empty; give the question to ask about the region", "question")
    for token in CONTROL_TOKENS:
        if token in question:
            raise QuestionError(f"question may not contain the chat-template token {token}", "question")
    n = question.count(placeholder)
    if n > 1:
        raise QuestionError(
            f"question holds the image placeholder {placeholder!r} {n} times; "
            "at most once (where the region's visual tokens go)",
            "question",
        )
    return question if n == 1 else f"{placeholder}\n{question}"


@dataclass
class RegionRequest:
    """One question about one region.

    Media: ``image`` (H, W, 3) uint8 RGB, or ``video`` (T, H, W, 3) frames with the region given on
    frame 0 and tracked by SAM 2. Ask: a ``task`` of the vocabulary (:mod:`pam.processing.prompts`;
    default ``detailed_caption`` for an image, ``video_caption`` for a video) or a free
    ``question``, not both; ``history`` is the previous caption of a streamed video caption.
    Generation: ``max_new_tokens`` for this item (None: the predictor's setting).
    """

    region: Region | dict
    image: Any = None
    video: Any = None
    task: str | None = None
    question: str | None = None
    language: str = "en"
    history: str | None = None
    max_new_tokens: int | None = None
    image_key: str | None = None  # requests with the same key share one SAM 2 encode (default: the same image object)

    @property
    def is_video(self) -> bool:
        return self.video is not None

    @property
    def answer_key(self) -> str:
        """Where the answer goes among a region's answers: the task's name, or ``question``."""
        return QUESTION_KEY if self.question is not None else self.task

    @property
    def hw(self) -> tuple[int, int]:
        media = np.asarray(self.video)[0] if self.is_video else self.image
        return tuple(np.asarray(media).shape[:2])

    def checked(self, name: str = "request", *, strict: bool = True) -> RegionRequest:
        """A validated copy: RGB uint8 media, a checked :class:`Region` (``strict=False`` keeps
        only its format checks, for benchmarks), a known task or a well-formed question."""
        media = self._checked_media(name)
        hw = tuple(media.shape[1:3] if self.is_video else media.shape[:2])
        try:
            region = Region.from_any(self.region, f"{name} region").checked(hw, f"{name} region", strict=strict)
        except RegionError as err:
            raise RegionError(str(err), "region" if err.field is None else f"region.{err.field}") from None
        check_language(self.language)
        task, question, history = self.task, self.question, self.history
        allowed = VIDEO_TASKS if self.is_video else IMAGE_TASKS
        if question is not None:
            if task is not None:
                raise QuestionError(f"{name}: give a task or a question, not both (task={task!r})", "question")
            if history is not None:
                raise QuestionError(
                    f"{name}: give a question or a caption history, not both "
                    "(the history belongs to the caption prompt)",
                    "history",
                )
            question_turn(question)
        else:
            task = allowed[-1] if task is None else (task.value if isinstance(task, Task) else task)
            if task not in allowed:
                raise TaskError(f"{name}: unknown task {task!r}; expected one of {list(allowed)}", "task")
            if history is not None and task != Task.VIDEO_CAPTION.value:
                raise TaskError(f"{name}: task {task!r} takes no caption history", "history")
        limit = self.max_new_tokens
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
            raise InputError(f"{name}: max_new_tokens must be an integer >= 1, got {limit!r}", "max_new_tokens")
        out = dataclasses.replace(self, region=region, task=task)
        if self.is_video:
            out.video = media
        else:
            out.image = media
        return out

    def _checked_media(self, name: str) -> np.ndarray:
        if (self.image is None) == (self.video is None):
            raise ImageInputError(f"{name}: give an image or a video (not both)")
        if self.is_video:
            frames = np.asarray(self.video)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
                raise ImageInputError(
                    f"{name}: video frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
                )
            return frames
        image = self.image
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            return image  # the same object: requests on it share one encode
        return load_rgb(image, f"{name} image")

    def user_turn(self, placeholder: str = IMAGE_PLACEHOLDER) -> str:
        """The user turn of a checked request: the task's prompt, or the question."""
        if self.question is not None:
            return question_turn(self.question, placeholder)
        return task_prompt(self.task, self.language, history=self.history)

    def sample(self, sample_id: str, image_key: str) -> dict:
        """The collator's sample dict for a checked request."""
        return {
            "id": sample_id,
            "media_type": "video" if self.is_video else "image",
            "image_key": image_key,
            "pixels": self.video if self.is_video else self.image,
            "prompt": self.region.prompt_dict(),
            "turns": [{"role": "user", "content": self.user_turn()}],
        }
