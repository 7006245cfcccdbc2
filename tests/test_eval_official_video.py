"""Video benchmarks against the official scripts, on fixtures in the official layouts.

Each expected value is computed in this file by an independent implementation of the official
logic (VideoRefer's ``eval_videorefer_bench_q.py`` and ``videorefer_bench_d/{2.extract_re,
3.analyze_score}.py``, ``captioning/eval_cococap.py``, PAM's ``eval/eval.py``), never by the
harness's own code. Judged benchmarks talk to a replay judge on 127.0.0.1. Also here: the two
places where the video path followed upstream's code late (absent-object blanking, floored frame
spreading), checked against upstream's rule computed independently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pam.modeling.sam2_types import RegionPrompt
from pam.utils.layout import spread_frames

# ---------------------------------------------------------------------------------------------
# Section: the video path against upstream's rules


@pytest.mark.parametrize("n, k", [(100, 32), (7, 4), (33, 32), (1000, 16), (64, 32), (5, 2)])
def test_spread_frames_floors_like_upstream_linspace(n, k):
    upstream = np.linspace(0, n - 1, num=k, dtype=int).tolist()  # upstream's sampling call, on a clip of n frames
    assert spread_frames(0, n - 1, k) == upstream
    assert spread_frames(10, 10 + n - 1, k) == [10 + i for i in upstream]  # a clip starting at frame 10
    # exact integer arithmetic agrees wherever float rounding cannot matter
    exact = [(i * (n - 1)) // (k - 1) for i in range(k)]
    assert sum(a != b for a, b in zip(upstream, exact)) <= 1


def test_spread_frames_100_of_32_differs_from_rounding_where_upstream_floors():
    ours = spread_frames(0, 99, 32)
    rounded = np.linspace(0, 99, 32).round().astype(int).tolist()
    assert sum(a != b for a, b in zip(ours, rounded)) == 15  # the old rule differed on 15 of 32
    assert ours[0] == 0 and ours[-1] == 99 and ours == sorted(set(ours))


def _image(size: int) -> torch.Tensor:
    from sam2.utils.transforms import SAM2Transforms

    img = np.full((size, size, 3), 20, np.uint8)
    img[60:140, 40:120] = (230, 40, 40)
    return SAM2Transforms(resolution=size, mask_threshold=0.0)(img)[None], img


class _ObjectScore:
    """Shifts the decoder's object-score logits by ``offset`` (one value per decoded region)."""

    def __init__(self, sam, offset):
        self.head = sam.model.sam_mask_decoder.pred_obj_score_head
        self.offset = torch.as_tensor(offset, dtype=torch.float32).reshape(-1, 1)

    def __enter__(self):
        self.handle = self.head.register_forward_hook(lambda _m, _i, out: out + self.offset.to(out))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_absent_object_is_blanked_on_the_image_path_and_frame_0(debug_bundle, tmp_path):
    from PIL import Image
    from sam2.modeling.sam2_base import NO_OBJ_SCORE

    sam = debug_bundle.model.sam2
    size = sam.image_size
    x, img = _image(size)
    feats = sam.encode_images(x)
    boxes = [torch.tensor([40.0, 60.0, 120.0, 140.0]), torch.tensor([30.0, 50.0, 130.0, 150.0])]
    prompts = [RegionPrompt(box=b) for b in boxes]
    index = torch.zeros(2, dtype=torch.long)
    with _ObjectScore(sam, [50.0, 50.0]):
        present = sam.decode(feats, index, prompts)
    with _ObjectScore(sam, [-50.0, 50.0]):  # region 0 absent, region 1 present, one batched call
        mixed = sam.decode(feats, index, prompts)
    # upstream's rule (SAM2Base._forward_sam_heads): logit > 0 keeps the masks, else NO_OBJ_SCORE
    obj = mixed.object_score_logits.reshape(-1)
    assert obj[0] < 0 < obj[1]
    expected = torch.where((obj > 0).reshape(-1, 1, 1, 1), present.mask_logits, torch.full_like(present.mask_logits, NO_OBJ_SCORE))
    assert torch.equal(mixed.mask_logits, expected)
    assert (present.mask_logits[0] != NO_OBJ_SCORE).any()  # not blanked when present: the check is not vacuous
    assert not (sam.upscale_masks(mixed.mask_logits[:1], (size, size)) > 0).any()  # 0 pixels
    # the perceiver's inputs do not depend on the blanking
    assert torch.equal(mixed.mask_tokens, present.mask_tokens) and torch.equal(mixed.image_embedding, present.image_embedding)

    # upstream's image path (sam2's video predictor, prompted on frame 0 of a one-frame clip) blanks too
    Image.fromarray(img).save(tmp_path / "00000.jpg", quality=95)
    state = sam.model.init_state(video_path=str(tmp_path))
    with _ObjectScore(sam, [-50.0]):
        _, _, ref_logits = sam.model.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=boxes[0].numpy())
        tracked = sam.track_video(x, prompts[0], keep=[0])  # later frames are sam2's own propagation
    assert not (ref_logits > 0).any()
    # frame 0 of a tracked clip (our image-path decode) is blanked as sam2 blanks every later frame
    assert torch.equal(tracked["mask_logits"][0], torch.full_like(tracked["mask_logits"][0], NO_OBJ_SCORE))
