"""G-STDC: the judged continuity of streamed captions, per video, as PAM's ``eval/eval.py`` scores it.

Items and predictions are those of ``activitynet_stream`` (:mod:`.activitynet_stream`; the same
prediction file scores both). For each video the judge gets one user message: the official system
prompt followed by the evaluation text, which lists the ground-truth and the predicted captions as
``Segment i: ...`` lines, sent with ``max_tokens`` 4096 (``judge.max_tokens``) and no temperature,
as ``chat_with_gpt`` does. The answer's ``Continuity Score: <number>`` in 0..5 is the video's score,
else 0 (counted in ``unparsed``); ``g_stdc`` is the mean over videos (0-5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..config import JudgeConfig
from ..registry import register
from ._judged import ask_with
from .activitynet_stream import ActivityNetStream, StreamConfig

# eval.py's evaluate_continuity prompts, byte for byte (their indentation included).
SYSTEM_PROMPT = (
    "\n"
    "    You are an expert evaluator specialized in assessing the continuity and coherence of "
    "video descriptions.\n"
    "    Your task is to evaluate how well a series of predicted descriptions maintain continuity "
    "compared to the ground truth descriptions.\n"
    "    \n"
    "    Please focus on the following aspects:\n"
    "    1. Temporal Continuity: How well the events flow naturally in time\n"
    "    2. Action Continuity: How well the actions connect and progress\n"
    "    3. Subject Consistency: How well the subject's identity and state are maintained\n"
    "    4. Context Preservation: How well the context and setting are maintained\n"
    "    5. Logical Flow: How well the descriptions follow a logical sequence\n"
    "    \n"
    "    Please provide:\n"
    "    1. A continuity score from 0 to 5 (where 5 is perfect continuity)\n"
    "    2. A detailed explanation of your scoring\n"
    "\n"
    "    \n"
    "    Format your response as:\n"
    "    Continuity Score: [score]\n"
    "    Explanation: [detailed explanation]\n"
    "    "
)
EVALUATION_PROMPT = (
    "Please evaluate the continuity of the following video descriptions:\n"
    "\n"
    "    Ground Truth Segments:\n"
    "    {gt_text}\n"
    "\n"
    "    Predicted Segments:\n"
    "    {pred_text}\n"
    "\n"
    "    Please evaluate how well the predicted segments maintain continuity compared to the "
    "ground truth."
)

_SCORE = re.compile(r"Continuity Score:\s*(\d+(?:\.\d+)?)")


def continuity_prompt(gts: Sequence[str], preds: Sequence[str]) -> str:
    pred_text = "\n".join(f"Segment {i + 1}: {p}" for i, p in enumerate(preds))
    gt_text = "\n".join(f"Segment {i + 1}: {g}" for i, g in enumerate(gts))
    return SYSTEM_PROMPT + EVALUATION_PROMPT.format(gt_text=gt_text, pred_text=pred_text)


def parse_continuity(answer: str) -> float | None:
    """The score ``parse_continuity_score`` reads (case-sensitive label, 0..5); None where it
    gives 0 for want of one."""
    m = _SCORE.search(answer)
    if m is None:
        return None
    value = float(m.group(1))
    return value if 0 <= value <= 5 else None


@dataclass
class GSTDCConfig(StreamConfig):
    judge: JudgeConfig | None = field(default_factory=lambda: JudgeConfig(model="gpt-4o", max_tokens=4096))


@register
class GSTDC(ActivityNetStream):
    name = "gstdc"
    paper = {"g_stdc": 2.67}  # PAM-3B, paper tables
    config_class = GSTDCConfig
    needs_judge = True
    description = "G-STDC: judged continuity of streamed captions per video (0-5)"
    official: ClassVar[dict[str, str]] = {
        "repo": "Perceive-Anything/PAM",
        "path": "eval/eval.py (calculate_continuity_score, evaluate_continuity)",
        "commit": "2fc36d306514f05dcbb1a8c8ec61278dd4aad897",
    }
    options: ClassVar[dict[str, str]] = {}
    notes: ClassVar[str] = (
        "eval.py groups events by a video_id its data lacks, so every event lands in one judge call; the default "
        "judges each video object on its own, the evident intent. A judge request that fails after its retries stops "
        "the run here (eval.py scores it 0). judge.temperature is not sent (eval.py sends none)."
    )
    metrics: ClassVar[tuple[str, ...]] = ("g_stdc",)

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        if judge is None:
            raise ValueError(f"{self.name} is scored by a judge LLM: give judge settings or a judge object")
        pairs = self.event_pairs(predictions, items)
        prompts = []
        for v in range(len(items)):
            gts = [g for i, g, _ in pairs if i == v]
            preds = [p for i, _, p in pairs if i == v]
            prompts.append([{"role": "user", "content": continuity_prompt(gts, preds)}])
        cfg = self.config.judge or JudgeConfig(max_tokens=4096)
        parsed = [
            parse_continuity(a)
            for a in ask_with(judge, prompts, max_workers=cfg.max_workers, max_tokens=cfg.max_tokens)
        ]
        return {
            "g_stdc": sum(s or 0.0 for s in parsed) / len(parsed),
            "unparsed": sum(s is None for s in parsed),
            "num_videos": len(items),
            "num_events": len(pairs),
            **self._counts(),
        }
