"""sam2's video predictor fed with frames already in memory, propagating without a progress bar."""

from __future__ import annotations

from collections import OrderedDict

import torch

from .sam2_build import import_sam2

_sam2_video_predictor = import_sam2()


class _NoProgress:
    """Stands in for ``tqdm`` inside sam2's propagation loop: yields the items, prints nothing."""

    def __init__(self, iterable, **_kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)


class TensorVideoPredictor(_sam2_video_predictor.SAM2VideoPredictor):
    """``SAM2VideoPredictor`` whose state starts from a (T, 3, S, S) tensor of preprocessed frames
    instead of a video path; otherwise sam2's own tracking (same parameters, same state keys)."""

    def init_state_from_frames(self, frames: torch.Tensor, *, offload_state_to_cpu: bool = False) -> dict:
        """sam2's ``init_state`` with ``frames`` as the loaded video (the pinned sam2 1.1.0 state layout)."""
        s = self.image_size
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, s, s):
            raise ValueError(f"frames must be (T, 3, {s}, {s}), got {tuple(frames.shape)}")
        device = self.device
        state = {
            "images": frames.to(device),
            "num_frames": frames.shape[0],
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": offload_state_to_cpu,
            "video_height": s,
            "video_width": s,
            "device": device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self._get_image_feature(state, frame_idx=0, batch_size=1)  # as sam2: warm up on frame 0
        return state

    def init_state(self, video_path, *args, **kwargs):
        if isinstance(video_path, torch.Tensor):
            return self.init_state_from_frames(
                video_path, offload_state_to_cpu=kwargs.get("offload_state_to_cpu", False)
            )
        return super().init_state(video_path, *args, **kwargs)

    def propagate_quietly(self, state: dict, **kwargs):
        """sam2's ``propagate_in_video`` without its progress bar.

        sam2 creates the bar from its module's ``tqdm`` name inside the loop and has no switch for
        it, so the name points to a pass-through while this generator runs, and back afterwards.
        """
        module = _sam2_video_predictor
        original = module.tqdm
        module.tqdm = _NoProgress
        try:
            yield from self.propagate_in_video(state, **kwargs)
        finally:
            module.tqdm = original
