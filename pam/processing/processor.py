"""Pre-processing between raw regions and PAM's inputs.

* Images and frames: resized (not letterboxed) to SAM 2's square input and normalised. With
  ``processing.resize: pil_bicubic`` (the released weights' default) as upstream's frame loader
  does: PIL's bicubic resize on uint8, then /255 and ImageNet mean/std; with ``sam2``, sam2's own
  ``SAM2Transforms`` (torchvision bilinear, antialiased), as ``SAM2ImagePredictor`` does.
* Prompts: points and boxes map from original pixels to SAM 2 input pixels; a binary region mask
  becomes SAM 2's low-resolution dense mask input.
* Text: ChatML with assistant-only labels; the single image placeholder is expanded to the
  region's number of visual tokens, which the model checks.
* Outputs: generated ids are cut at the first end-of-sequence token and decoded; SAM 2's
  low-resolution mask logits are upsampled to the original image size, as ``SAM2ImagePredictor``
  post-processes them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..modeling.config import PAMConfig
from ..modeling.sam2_build import import_sam2
from ..modeling.sam2_types import RegionPrompt, mask_input_from_binary
from ..utils.layout import IGNORE_INDEX
from .chat import EOS_TOKENS, tokenize_chat

import_sam2()
from sam2.utils.transforms import SAM2Transforms  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_pil_bicubic(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) float32 as upstream PAM's loader: PIL ``resize`` (bicubic,
    PIL's default) on the uint8 image, /255 in float64, cast to float32, then ImageNet mean/std."""
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    x = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


class PAMProcessor:
    def __init__(self, *, config: PAMConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        self.image_size = config.sam2.image_size
        self.mask_input_size = 4 * config.sam2.embedding_size
        self.resize = config.processing.resize
        self._transforms = None  # sam2's SAM2Transforms, built on first use (resize: sam2 only)
        self.image_token_id = tokenizer.convert_tokens_to_ids(config.image_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"the tokenizer has no {config.image_token!r} token; load it with pam.processing.tokenizer"
            )
        vocab = tokenizer.get_vocab()
        self.eos_token_ids = [tokenizer.convert_tokens_to_ids(t) for t in EOS_TOKENS if t in vocab]

    # ----- pixels --------------------------------------------------------------------------------
    def preprocess_image(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, S, S) float, normalised as SAM 2 expects."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        if self.resize == "pil_bicubic":
            return resize_pil_bicubic(image, self.image_size)
        return self.transforms(image)

    @property
    def transforms(self):
        """sam2's ``SAM2Transforms``. Its constructor calls ``torch.jit.script``, which torch 2.14
        deprecates with a FutureWarning on every build; that one warning is silenced here, where it
        arises, and the object is only built when ``resize: sam2`` needs it."""
        if self._transforms is None:
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
                self._transforms = SAM2Transforms(resolution=self.image_size, mask_threshold=0.0)
        return self._transforms

    def preprocess_video(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, S, S)."""
        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
        return torch.stack([self.preprocess_image(f) for f in frames])

    # ----- prompts -------------------------------------------------------------------------------
    def to_model_coords(self, xy: np.ndarray | torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        h, w = orig_hw
        xy = torch.as_tensor(np.asarray(xy, dtype=np.float32)).reshape(-1, 2)
        scale = torch.tensor([self.image_size / w, self.image_size / h])
        return xy * scale

    def to_original_coords(self, xy: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        h, w = orig_hw
        return xy.reshape(-1, 2) * torch.tensor([w / self.image_size, h / self.image_size])

    def mask_to_prompt(self, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Binary (H, W) mask at any size -> (1, 4E, 4E) SAM 2 dense mask input (bilinear,
        antialiased, as SAM 2 resizes mask prompts)."""
        return mask_input_from_binary(torch.as_tensor(np.asarray(mask)), self.mask_input_size)

    def region_prompt(self, prompt: dict, orig_hw: tuple[int, int]) -> RegionPrompt:
        """``{"points", "point_labels", "box", "mask"}`` in original pixels -> a RegionPrompt."""
        points = prompt.get("points")
        labels = prompt.get("point_labels")
        box = prompt.get("box")
        mask = prompt.get("mask")
        return RegionPrompt(
            point_coords=None if points is None else self.to_model_coords(points, orig_hw),
            point_labels=None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int32).reshape(-1),
            box=None if box is None else self.to_model_coords(box, orig_hw).reshape(4),
            mask_input=None if mask is None else self.mask_to_prompt(mask),
        )

    # ----- text ----------------------------------------------------------------------------------
    def tokenize(self, turns: list[dict], *, num_frames: int | None, add_generation_prompt: bool = False) -> dict:
        """Token ids and labels with the placeholder expanded to the region's visual tokens."""
        chat = tokenize_chat(self.tokenizer, turns, add_generation_prompt=add_generation_prompt)
        positions = [i for i, t in enumerate(chat.input_ids) if t == self.image_token_id]
        if len(positions) != 1:
            raise ValueError(
                f"the conversation must contain the image placeholder {self.config.image_token!r} exactly once, "
                f"found {len(positions)}"
            )
        p = positions[0]
        n = self.config.num_visual_tokens(num_frames)
        ids = chat.input_ids[:p] + [self.image_token_id] * n + chat.input_ids[p + 1 :]
        labels = chat.labels[:p] + [IGNORE_INDEX] * n + chat.labels[p + 1 :]
        return {"input_ids": ids, "labels": labels}

    # ----- outputs -------------------------------------------------------------------------------
    def decode(self, ids: list[int], max_new_tokens: int | None = None) -> tuple[str, list[int], str]:
        """One generated row -> (text, its token ids, finish reason): the row is cut at its first
        end-of-sequence token ("stop"), else at ``max_new_tokens`` ("length")."""
        cut = next((i for i, t in enumerate(ids) if t in self.eos_token_ids), len(ids))
        limit = len(ids) if max_new_tokens is None else max_new_tokens
        if cut < limit:
            kept, reason = ids[:cut], "stop"
        else:
            kept, reason = ids[:limit], "length"
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip(), kept, reason

    def postprocess_masks(self, mask_logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Low-res logits (N, h, w) -> bool masks (N, H, W) at the original size (bilinear, > 0)."""
        up = self.transforms.postprocess_masks(mask_logits.float().unsqueeze(1), tuple(orig_hw))
        return up[:, 0] > 0.0
