"""Conversation turns for a region task, built from the region's texts.

The user turn is :func:`pam.processing.prompts.task_prompt`; the assistant turn is the text the task
asks for. ``explain`` answers with the category, its definition and (when known) its function in
one template per language.
"""

from __future__ import annotations

from dataclasses import dataclass

from pam.data.schema import RegionAnnotation
from pam.processing.prompts import Task, task_prompt

CONVERSATION = "conversation"  # task name of free-form turns given with the data
TASKS = tuple(t.value for t in Task) + (CONVERSATION,)

_EXPLAIN = {
    "en": ("{category}. Definition: {definition}.", " Function: {function}."),
    "zh": ("{category}。定义：{definition}。", "功能：{function}。"),
}


@dataclass(frozen=True)
class TaskChoice:
    """One sample a region can give: a task, a language and, for video captions, an event."""

    task: str  # a Task value or CONVERSATION
    language: str  # "en" | "zh"
    event: int | None = None  # index into region.events for video_caption


def _clean(text: str) -> str:
    return text.strip().rstrip(".。").strip()


def explain_answer(category: str, definition: str, function: str | None, language: str) -> str:
    head, tail = _EXPLAIN[language]
    out = head.format(category=_clean(category), definition=_clean(definition))
    if function:
        out += tail.format(function=_clean(function))
    return out


def available_choices(
    region: RegionAnnotation, video: bool, tasks: tuple[str, ...], languages: tuple[str, ...]
) -> list[TaskChoice]:
    """Every (task, language[, event]) the region has the texts for, among ``tasks`` and ``languages``."""
    if region.conversations is not None:
        task = region.task or CONVERSATION
        language = region.language or "en"
        return [TaskChoice(task, language)] if task in tasks and language in languages else []
    out = []
    for lang in languages:
        has = {
            name: region.text(name, lang) is not None
            for name in ("category", "definition", "short_caption", "detailed_caption")
        }
        if Task.CATEGORY.value in tasks and has["category"]:
            out.append(TaskChoice(Task.CATEGORY.value, lang))
        if Task.EXPLAIN.value in tasks and has["category"] and has["definition"]:
            out.append(TaskChoice(Task.EXPLAIN.value, lang))
        for name in (Task.SHORT_CAPTION.value, Task.DETAILED_CAPTION.value):
            if name in tasks and has[name]:
                out.append(TaskChoice(name, lang))
        if video and Task.VIDEO_CAPTION.value in tasks:
            out.extend(
                TaskChoice(Task.VIDEO_CAPTION.value, lang, k) for k, e in enumerate(region.events) if lang in e.caption
            )
    return out


def event_history(region: RegionAnnotation, choice: TaskChoice) -> str | None:
    """The previous event's caption (streaming captioning), or None for the first event."""
    if choice.event is None or choice.event == 0:
        return None
    return region.events[choice.event - 1].caption.get(choice.language)


def build_turns(region: RegionAnnotation, choice: TaskChoice) -> list[dict[str, str]]:
    """The user/assistant turns of ``choice``; given conversations are returned as they are."""
    if region.conversations is not None:
        return [dict(t) for t in region.conversations]
    lang = choice.language
    task = Task(choice.task)
    history = None
    if task is Task.CATEGORY:
        answer = region.text("category", lang)
    elif task is Task.EXPLAIN:
        answer = explain_answer(
            region.text("category", lang), region.text("definition", lang), region.text("function", lang), lang
        )
    elif task is Task.VIDEO_CAPTION:
        assert choice.event is not None
        answer = region.events[choice.event].caption[lang]
        history = event_history(region, choice)
    else:
        answer = region.text(task.value, lang)
    assert answer is not None, f"task {task.value} has no {lang} text for this region"
    return [
        {"role": "user", "content": task_prompt(task, lang, history=history)},
        {"role": "assistant", "content": answer},
    ]
