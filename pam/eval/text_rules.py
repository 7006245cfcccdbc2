"""How LVIS/PACO recognition texts are cleaned before Semantic Similarity and Semantic IoU.

``osprey`` (the default) is Osprey's ``lvis_paco_eval.py``, with which the paper's Table 1 was
scored. It treats the two sides differently:

- ground truth: ``_`` and ``:`` become spaces (``"mug:handle"`` -> ``"mug handle"``);
- prediction: stripped; if it has a colon, only the text between the first and the second colon
  is kept (upstream's ``split(':')[1]``); then ``.``, ``:`` and ``,`` become spaces.

The similarity embeds these two strings as they are; Semantic IoU lower-cases both and splits them
on whitespace. ``videorefer`` is VideoRefer's variant: on both sides ``_ : , . ( )`` become spaces,
then strip and lower-case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

TEXT_RULES = ("osprey", "videorefer")


def osprey_reference(text: str) -> str:
    return text.replace("_", " ").replace(":", " ")


def osprey_prediction(text: str) -> str:
    text = text.strip()
    if ":" in text:
        text = text.split(":")[1]
    return text.replace(".", " ").replace(":", " ").replace(",", " ")


def videorefer_text(text: str) -> str:
    for ch in "_:,.()":
        text = text.replace(ch, " ")
    return text.strip().lower()


def rule_functions(rule: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """(prediction cleaner, reference cleaner) of a named rule."""
    if rule == "osprey":
        return osprey_prediction, osprey_reference
    if rule == "videorefer":
        return videorefer_text, videorefer_text
    raise ValueError(f"unknown text rule {rule!r}; expected one of {TEXT_RULES}")


def word_iou(pred: str, ref: str) -> float:
    """|P & R| / |P | R| over the lower-cased whitespace-split word sets (Osprey's SemanticIOU)."""
    p, r = set(pred.lower().split()), set(ref.lower().split())
    if not r:
        raise ValueError(f"reference {ref!r} has no words")
    return len(p & r) / len(p | r)


def recognition_scores(
    preds: Sequence[str],
    refs: Sequence[str],
    *,
    rule: str = "osprey",
    model_path: str | Path | None = None,
    batch_size: int = 64,
) -> dict[str, list[float]]:
    """Per-item ``semantic_similarity`` (cosine of all-MiniLM-L6-v2 embeddings) and ``semantic_iou``."""
    from .metrics import pairwise_semantic_similarity

    clean_pred, clean_ref = rule_functions(rule)
    p = [clean_pred(t) for t in preds]
    r = [clean_ref(t) for t in refs]
    sims = pairwise_semantic_similarity(p, r, model_path=model_path, batch_size=batch_size)
    ious = []
    for i, (a, b) in enumerate(zip(p, r)):
        try:
            ious.append(word_iou(a, b))
        except ValueError as err:
            raise ValueError(f"item {i}: {err}") from err
    return {"semantic_similarity": sims, "semantic_iou": ious}
