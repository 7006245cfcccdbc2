"""The task vocabulary: task names, their prompts in English and Chinese, and the answer fields.

This is the one place a task is written down. The predictor, the server, the demo, the CLI and the
evaluation read their task lists, prompt wording, labels and answer parsers from here.

The wording of the image and video prompts is the one the released PAM checkpoints were trained
with (a fact about the weights, so changing it degrades them). Every prompt starts with the image
placeholder on its own line, as the released model expects.
"""

from __future__ import annotations

import re
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
IMAGE_TASKS: tuple[str, ...] = (
    Task.CATEGORY.value,
    Task.EXPLAIN.value,
    Task.SHORT_CAPTION.value,
    Task.DETAILED_CAPTION.value,
)
VIDEO_TASKS: tuple[str, ...] = (Task.VIDEO_CAPTION.value,)
TASKS: tuple[str, ...] = IMAGE_TASKS + VIDEO_TASKS
# what a user interface calls each image task
TASK_LABELS: dict[str, str] = {
    Task.CATEGORY.value: "Category",
    Task.EXPLAIN.value: "Explanation",
    Task.SHORT_CAPTION.value: "Short caption",
    Task.DETAILED_CAPTION.value: "Detailed caption",
    Task.VIDEO_CAPTION.value: "Video caption",
}
QUESTION_KEY = "question"  # the key of a free-question answer beside the task answers


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


def instruction(task: Task | str, language: str = "en") -> str:
    """A task's instruction text alone (the prompt without the image placeholder line)."""
    return task_prompt(task, language).split("\n", 1)[1]


def task_from_text(text: str, tasks: tuple[str, ...] = IMAGE_TASKS) -> str | None:
    """The task a text names: its name (any case) or its exact instruction wording in any
    language; None when the text is a free question."""
    t = text.strip()
    for name in tasks:
        if t.lower() == name or any(t == instruction(name, lang) for lang in LANGUAGES):
            return name
    return None


# the answer formats PAM is trained on (pam.data.turns.explain_answer)
_EXPLAIN = {
    "en": re.compile(
        r"^(?P<category>.*?)\.\s*Definition:\s*(?P<definition>.*?)\.?(?:\s*Function:\s*(?P<function>.*?)\.?)?$", re.S
    ),
    "zh": re.compile(r"^(?P<category>.*?)。\s*定义：(?P<definition>.*?)。?(?:\s*功能：(?P<function>.*?)。?)?$", re.S),
}


def parse_fields(task: str, text: str, language: str = "en") -> dict:
    """Structured fields of one answer: ``category`` (category), ``category/definition/function``
    (explain; None where the text does not follow the trained format), ``caption`` (captions)."""
    text = text.strip()
    if task == Task.CATEGORY.value:
        return {"category": text.rstrip(".。").strip()}
    if task == Task.EXPLAIN.value:
        m = _EXPLAIN[language].match(text)
        if not m:
            return {"category": None, "definition": None, "function": None}
        return {k: (v.strip() if v else None) for k, v in m.groupdict().items()}
    return {"caption": text}
