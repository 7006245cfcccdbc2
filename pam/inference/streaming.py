"""Streaming event captions over one SAM 2 tracking state.

The whole clip is tracked once (:meth:`FrozenSAM2.iter_track`): SAM 2's memory runs across event
boundaries, unlike upstream's notebook, which re-prompts a fresh state per segment. As frames are
tracked, a :class:`~pam.inference.events.BoundaryDetector` watches the tracked mask; when it
confirms a boundary, the event just closed is captioned from the perceiver inputs of its frames
(its first frame in the first-frame layout, then ``video_num_frames - 1`` frames spread over the
rest, as for a clip) with the previous event's caption in the prompt. Only the open event's
perceiver inputs are kept in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from ..processing.prompts import Task, task_prompt
from ..utils.layout import select_frames
from .events import BoundaryDetector, BoundaryRule
from .regions import Region
from .results import StreamEvent


@torch.no_grad()
def caption_from_tracked(predictor, per_frame: list[tuple[torch.Tensor, torch.Tensor]], language: str, history: str | None) -> str:
    """Caption a clip from its frames' (image embedding, mask tokens): the model's visual
    layout for a video region, then the LLM with the predictor's decoding settings."""
    model, tok = predictor.model, predictor.bundle.tokenizer
    n = len(per_frame)
    embeds = [model._region_tokens(e, m, first_frame=(i == 0), last=False)[0] for i, (e, m) in enumerate(per_frame)]
    turns = [{"role": "user", "content": task_prompt(Task.VIDEO_CAPTION, language, history=history)}]
    ids = predictor.processor.tokenize(turns, num_frames=n, add_generation_prompt=True)["input_ids"]
    input_ids = torch.tensor([ids], device=model.device)
    inputs = model.build_inputs_embeds(input_ids, [torch.cat(embeds).to(model.llm_dtype)])
    eos = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>") if t in tok.get_vocab()]
    predictor._seed()
    out = model.llm.generate(
        inputs_embeds=inputs,
        attention_mask=torch.ones(input_ids.shape, dtype=torch.long, device=model.device),
        max_new_tokens=predictor.max_new_tokens,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id,
        **predictor.generation_kwargs,
    )[0].tolist()
    cut = next((i for i, t in enumerate(out) if t in eos), len(out))
    return tok.decode(out[:cut], skip_special_tokens=True).strip()


@torch.no_grad()
def stream_events(
    predictor, frames: np.ndarray, indices: list[int], region: Region, *, language: str = "en", rule: BoundaryRule | None = None,
    progress: bool = False, ends: list[int] | None = None,
):
    """Yield :class:`StreamEvent` s (frame numbers are ``indices``, i.e. the input video's).
    ``ends``: the last position in ``frames`` of each event, given (a benchmark's annotated events)
    instead of found by ``rule``; increasing, the last one ``len(frames) - 1``."""
    model, proc = predictor.model, predictor.processor
    hw = tuple(frames.shape[1:3])
    if ends is not None:
        ends = [int(e) for e in ends]
        if not ends or any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 0 or ends[-1] != len(frames) - 1:
            raise ValueError(f"event ends must increase from 0 and end at the last frame ({len(frames) - 1}), got {ends}")
    given = list(ends) if ends is not None else None
    detector = BoundaryDetector(rule)
    prompt = proc.region_prompt(region.prompt_dict(), hw).to(model.device)
    pixels = proc.preprocess_video(frames).to(model.device, model.sam2_dtype)
    keep_k = model.config.video_num_frames
    features: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    logits: dict[int, torch.Tensor] = {}
    state = {"start": 0, "history": None}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), desc="tracking", unit="frame")

    def close(end: int, score: float | None) -> StreamEvent:
        start = state["start"]
        chosen = [start + k for k in select_frames(end - start + 1, keep_k)]
        caption = caption_from_tracked(predictor, [features[f] for f in chosen], language, state["history"])
        low = torch.cat([logits[f].reshape(1, 1, *logits[f].shape[-2:]) for f in range(start, end + 1)])
        masks = (model.sam2.upscale_masks(low, hw)[:, 0] > 0).cpu().numpy()
        for f in range(start, end + 1):
            features.pop(f, None)
            logits.pop(f, None)
        state["start"], state["history"] = end + 1, caption
        return StreamEvent(start_frame=indices[start], end_frame=indices[end], caption=caption, masks=masks, boundary_score=score)

    with predictor.autocast():
        for idx, low, embedding, tokens, _score in model.sam2.iter_track(pixels, prompt):
            features[idx] = (embedding, tokens)
            logits[idx] = low.float()
            if bar is not None:
                bar.update(1)
            if given is not None:
                if idx == given[0]:
                    given.pop(0)
                    yield close(idx, None)
                continue
            detector.push((low[0, 0] > 0).cpu().numpy())
            for start, score in detector.pop():
                yield close(start - 1, score)
        if given is None:
            for start, score in detector.finish():
                yield close(start - 1, score)
        if state["start"] < len(frames):
            yield close(len(frames) - 1, None)
    if bar is not None:
        bar.close()
