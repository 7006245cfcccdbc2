"""Task prompts in English and Chinese.

The wording of the image and video prompts is the one the released PAM checkpoints were trained
with (a fact about the weights, so changing it degrades them). Every prompt starts with the image
placeholder on its own line, as the released model expects.
"""

from __future__ import annotations

from enum import Enum

IMAGE_PLACEHOLDER = "<image>"
NO_HISTORY = {"en": "None", "zh": "无"}


class Task(str, Enum):
    """The region tasks PAM is trained on."""

    CATEGORY = "category"  # "Classify this subject and provide its label."
    EXPLAIN = "explain"  # label + definition + function
    SHORT_CAPTION = "short_caption"
    DETAILED_CAPTION = "detailed_caption"
    VIDEO_CAPTION = "video_caption"  # with "Previous caption: ..." history for streaming


_PROMPTS: dict[tuple[Task, str], str] = {
    (Task.CATEGORY, "en"): "Classify this subject and provide its label.",
    (Task.CATEGORY, "zh"): "对该目标对象进行分类并提供标签",
    (Task.EXPLAIN, "en"): "Classify this subject and provide the label and its definition.",
    (Task.EXPLAIN, "zh"): "对该目标对象进行分类并提供标签和名词功能解释",
    (Task.SHORT_CAPTION, "en"): "Provide a concise caption for this subject.",
    (Task.SHORT_CAPTION, "zh"): "对该目标对象提供一个概括的描述",
    (Task.DETAILED_CAPTION, "en"): "Provide a comprehensive and detailed description for this subject.",
    (Task.DETAILED_CAPTION, "zh"): "对该目标对象提供一个全面且详细的描述",
    (Task.VIDEO_CAPTION, "en"): "Provide a caption for this subject in this video.\nPrevious caption: {history}",
    (Task.VIDEO_CAPTION, "zh"): "对该视频中的目标对象提供一个描述。\n历史描述：{history}",
}

LANGUAGES = ("en", "zh")


def task_prompt(task: Task | str, language: str = "en", history: str | None = None) -> str:
    """The user turn for a task: the image placeholder, a newline, then the instruction.

    ``history`` is the previous caption for streaming video captioning; ``None`` means the first
    segment and is written as the language's "none" word, as the released model was trained.
    """
    task = Task(task)
    if language not in LANGUAGES:
        raise ValueError(f"unknown prompt language {language!r}; expected one of {LANGUAGES}")
    text = _PROMPTS[(task, language)]
    if task is Task.VIDEO_CAPTION:
        text = text.format(history=history if history else NO_HISTORY[language])
    elif history is not None:
        raise ValueError(f"task {task.value!r} takes no caption history")
    return f"{IMAGE_PLACEHOLDER}\n{text}"
