"""PAM's frozen SAM 2 path against sam2's own SAM2ImagePredictor and SAM2VideoPredictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from pam.api import build_sam2
from pam.checkpoints.sam2 import load_sam2_checkpoint, save_sam2_checkpoint
from pam.checkpoints.strict import CheckpointMismatchError
from pam.modeling.config import SAM2Config
from pam.modeling.sam2_encoder import FrozenSAM2
from pam.modeling.sam2_types import RegionPrompt, mask_input_from_binary

from .helpers import region_mask, synthetic_image, write_square_jpegs

SIZE = 256


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    # stock sam2 settings: the reference below is sam2's own predictor with its stability fallback
    return FrozenSAM2.from_config(SAM2Config(variant="sam2.1_hiera_t", image_size=SIZE, tracking="stock"))


@pytest.fixture(scope="module")
def predictor(sam):
    pred = SAM2ImagePredictor(sam.model)
    pred._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]
    pred.set_image(synthetic_image())
    return pred


def _prompt(pred, points=None, labels=None, box=None, mask_input=None):
    orig = pred._orig_hw[0]
    t = pred._transforms
    return RegionPrompt(
        point_coords=None
        if points is None
        else t.transform_coords(torch.tensor(points, dtype=torch.float), normalize=True, orig_hw=orig),
        point_labels=None if labels is None else torch.tensor(labels, dtype=torch.int32),
        box=None
        if box is None
        else t.transform_boxes(torch.tensor(box, dtype=torch.float), normalize=True, orig_hw=orig).reshape(4),
        mask_input=mask_input,
    )


CASES = {
    "points": dict(points=[[100.0, 80.0], [150.0, 100.0]], labels=[1, 0]),
    "box": dict(box=[50.0, 40.0, 190.0, 130.0]),
    "box+point": dict(box=[50.0, 40.0, 190.0, 130.0], points=[[100.0, 80.0]], labels=[1]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_masks_and_scores_match_sam2_image_predictor(sam, predictor, case):
    kw = CASES[case]
    feats = sam.encode_images(predictor._transforms(synthetic_image())[None])
    assert torch.equal(feats.image_embed, predictor._features["image_embed"])
    prompt = _prompt(predictor, kw.get("points"), kw.get("labels"), kw.get("box"))
    out = sam.decode(feats, torch.tensor([0]), [prompt])
    # the three multimask outputs
    _, iou3, low3 = predictor.predict(
        point_coords=kw.get("points"),
        point_labels=kw.get("labels"),
        box=kw.get("box"),
        multimask_output=True,
        return_logits=True,
    )
    np.testing.assert_allclose(out.all_mask_logits[0, 1:].clamp(-32, 32).numpy(), low3, atol=1e-5)
    np.testing.assert_allclose(out.all_iou_scores[0, 1:].numpy(), iou3, atol=1e-6)
    # the single mask with SAM 2's stability fallback, at the original size
    masks1, iou1, low1 = predictor.predict(
        point_coords=kw.get("points"), point_labels=kw.get("labels"), box=kw.get("box"), multimask_output=False
    )
    sam.mask_selection = "stability"
    try:
        stab = sam.decode(feats, torch.tensor([0]), [prompt])
    finally:
        sam.mask_selection = "single"
    np.testing.assert_allclose(stab.mask_logits[0].clamp(-32, 32).numpy(), low1, atol=1e-5)
    np.testing.assert_allclose(stab.iou_scores[0].numpy(), iou1, atol=1e-6)
    assert np.array_equal(sam.upscale_masks(stab.mask_logits, (200, 300))[0].numpy() > 0, masks1)
    # default: output 0's mask, as upstream PAM
    assert torch.equal(out.mask_logits[0, 0], out.all_mask_logits[0, 0])


def test_mask_prompt_goes_through_dense_input(sam, predictor):
    feats = sam.encode_images(predictor._transforms(synthetic_image())[None])
    mask_input = mask_input_from_binary(torch.from_numpy(region_mask()), sam.mask_input_size)
    assert mask_input.shape == (1, 4 * SIZE // 16, 4 * SIZE // 16)
    out = sam.decode(feats, torch.tensor([0]), [RegionPrompt(mask_input=mask_input)])
    _, iou3, low3 = predictor.predict(mask_input=mask_input.numpy(), multimask_output=True, return_logits=True)
    np.testing.assert_allclose(out.all_mask_logits[0, 1:].clamp(-32, 32).numpy(), low3, atol=1e-5)
    np.testing.assert_allclose(out.all_iou_scores[0, 1:].numpy(), iou3, atol=1e-6)
    # the dense prompt changes the result compared with no prompt information
    box_out = sam.decode(feats, torch.tensor([0]), [_prompt(predictor, box=[50.0, 40.0, 190.0, 130.0])])
    assert not torch.allclose(box_out.image_embedding, out.image_embedding)


def test_perceiver_inputs_are_decoder_internals(sam, predictor):
    """The captured embedding is the two-way transformer's output; the two tokens follow the rule."""
    feats = sam.encode_images(predictor._transforms(synthetic_image())[None])
    prompt = _prompt(predictor, box=[50.0, 40.0, 190.0, 130.0])
    seen = {}
    handle = sam.model.sam_mask_decoder.transformer.register_forward_hook(
        lambda m, i, o: seen.update(hs=o[0], src=o[1])
    )
    try:
        out = sam.decode(feats, torch.tensor([0]), [prompt])
    finally:
        handle.remove()
    e = SIZE // 16
    assert torch.equal(out.image_embedding, seen["src"].transpose(1, 2).reshape(1, 256, e, e))
    tokens = seen["hs"][:, 2:6]  # object-score token, IoU token, then the 4 mask tokens
    dec = sam.model.sam_mask_decoder
    stable = dec._get_stability_scores(out.all_mask_logits[:, 0]) >= dec.dynamic_multimask_stability_thresh
    chosen = 0 if bool(stable[0]) else 1 + int(out.all_iou_scores[0, 1:].argmax())
    assert torch.equal(out.mask_tokens[0, 0], tokens[0, chosen])
    assert torch.equal(out.mask_tokens[0, 1], tokens[0, 0])


def test_batched_regions_equal_single_calls(sam, predictor):
    img2 = synthetic_image(seed=1)
    x = torch.stack([predictor._transforms(synthetic_image()), predictor._transforms(img2)])
    feats = sam.encode_images(x)
    prompts = [
        _prompt(predictor, box=[50.0, 40.0, 190.0, 130.0]),
        _prompt(predictor, points=[[100.0, 80.0]], labels=[1]),
        _prompt(predictor, box=[200.0, 120.0, 280.0, 180.0]),
        _prompt(predictor, points=[[220.0, 150.0], [10.0, 10.0]], labels=[1, 0]),
    ]
    index = torch.tensor([0, 0, 1, 1])
    together = sam.decode(feats, index, prompts)
    for r, p in enumerate(prompts):
        alone = sam.decode(sam.encode_images(x[index[r] : index[r] + 1]), torch.tensor([0]), [p])
        torch.testing.assert_close(together.mask_logits[r], alone.mask_logits[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(together.mask_tokens[r], alone.mask_tokens[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(together.image_embedding[r], alone.image_embedding[0], atol=1e-5, rtol=0)


def test_frozen(sam):
    sam.train()
    sam.assert_frozen()
    assert not any(p.requires_grad for p in sam.model.parameters())


def test_official_checkpoint_loads_strictly(tmp_path, sam):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    save_sam2_checkpoint(sam.model, path)
    fresh = build_sam2(SAM2Config(variant="sam2.1_hiera_t", image_size=SIZE, checkpoint=str(path))).model
    for (k, a), (_, b) in zip(sam.model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k
    blob = torch.load(path, weights_only=True)
    del blob["model"]["sam_mask_decoder.iou_token.weight"]
    blob["model"]["extra.weight"] = torch.zeros(1)
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"iou_token\.weight.*extra\.weight"):
        load_sam2_checkpoint(fresh, tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "wrong_format.pt")
    with pytest.raises(ValueError, match="'model'"):
        load_sam2_checkpoint(fresh, tmp_path / "wrong_format.pt")


def test_video_tracking_matches_sam2_video_predictor(sam, tmp_path):
    """Masks tracked through PAM's path equal sam2's own video predictor on the same frames."""
    frames = write_square_jpegs(tmp_path, 4, SIZE)
    from sam2.utils.transforms import SAM2Transforms

    tr = SAM2Transforms(resolution=SIZE, mask_threshold=0.0)
    x = torch.stack([tr(f) for f in frames])
    box = torch.tensor([40.0, 60.0, 120.0, 140.0])
    out = sam.track_video(x, RegionPrompt(box=box), keep=[0, 2, 3])
    assert set(out["image_embedding"]) == {0, 2, 3}
    state = sam.model.init_state(video_path=str(tmp_path))
    sam.model.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box.numpy())
    ref = {f: m for f, _, m in sam.model.propagate_in_video(state)}
    for f in (1, 2, 3):
        ours = sam.upscale_masks(out["mask_logits"][f], (SIZE, SIZE)) > 0
        theirs = ref[f] > 0
        agree = (ours == theirs).float().mean().item()
        # same model, same JPEG pixels; sam2's own loader resizes with PIL, ours with torchvision
        assert agree > 0.99, (f, agree)
