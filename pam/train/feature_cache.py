"""Cache of frozen SAM 2 image-encoder features, so training encodes each image once.

SAM 2 is frozen, so an image's encoder output never changes during training. ``build`` walks a
dataset once, encodes every distinct image (by the sample's ``image_key``) and writes the
features into sharded safetensors files; ``lookup`` then serves a batch's images from disk. Dataset
keys are the image file's real path (:func:`pam.data.datasets.media_key`), so the same data reached
through a symlink or a path with ``..`` finds its features; a file rewritten in place at the same
path is not detected (use a new cache folder after regenerating data).

The cache folder is keyed by everything that changes the features: the SAM 2 variant, the image
size and a fingerprint of the weights themselves. Features are stored in float32 by default, so
cached and uncached training give the same numbers; ``dtype="bfloat16"`` halves the disk space
for large runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..checkpoints.io import atomic_write_text, load_tensors, save_tensors
from ..modeling.config import SAM2Config
from ..modeling.sam2_encoder import FrozenSAM2
from ..modeling.sam2_types import ImageFeatures

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def weights_fingerprint(sam2: FrozenSAM2) -> str:
    """A hash over a slice of every SAM 2 tensor: different weights (another checkpoint, another
    random seed, a replaced file at the same path) give another cache folder."""
    h = hashlib.sha1()
    for name, t in sorted(sam2.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().flatten()[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def cache_signature(cfg: SAM2Config, sam2: FrozenSAM2) -> str:
    return f"{cfg.variant}-{cfg.image_size}-{weights_fingerprint(sam2)}"


def _slot(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


class FeatureCache:
    def __init__(
        self, root: str | Path, sam2_cfg: SAM2Config, sam2: FrozenSAM2, *, dtype: str = "float32", shard_size: int = 256
    ):
        self.dir = Path(root) / cache_signature(sam2_cfg, sam2)
        self.dtype = _DTYPES[dtype]
        self.shard_size = shard_size
        self.index: dict[str, str] = {}
        self._shards: dict[str, dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0
        if (self.dir / "index.json").is_file():
            self.index = json.loads((self.dir / "index.json").read_text())

    def __contains__(self, key: str) -> bool:
        return _slot(key) in self.index

    def __len__(self) -> int:
        return len(self.index)

    @torch.no_grad()
    def build(self, sam2: FrozenSAM2, dataset, collate, *, batch_size: int = 8, num_workers: int = 0, log=print) -> int:
        """Encode every image of ``dataset`` not yet cached. Returns the number newly written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        pending: dict[str, torch.Tensor] = {}
        written = 0
        shard_no = len({v for v in self.index.values()})
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
        device = next(iter([sam2.model.no_mem_embed])).device
        for batch in loader:
            if batch["pixel_values"] is None:
                continue
            todo = [
                (i, k)
                for i, k in enumerate(batch.meta["image_keys"])
                if _slot(k) not in self.index and _slot(k) not in pending
            ]
            if not todo:
                continue
            feats = sam2.encode_images(batch["pixel_values"][[i for i, _ in todo]].to(device))
            for j, (_, key) in enumerate(todo):
                slot = _slot(key)
                pending[f"{slot}.embed"] = feats.image_embed[j].to(self.dtype).cpu()
                for level, f in enumerate(feats.high_res_feats):
                    pending[f"{slot}.high{level}"] = f[j].to(self.dtype).cpu()
                pending[slot] = torch.empty(0)
            if sum(1 for k in pending if "." not in k) >= self.shard_size:
                written += self._flush(pending, shard_no)
                shard_no += 1
                pending = {}
                log(f"feature cache: {len(self.index)} images encoded")
        if pending:
            written += self._flush(pending, shard_no)
        return written

    def _flush(self, pending: dict, shard_no: int) -> int:
        name = f"shard-{shard_no:05d}.safetensors"
        slots = [k for k in pending if "." not in k]
        save_tensors({k: v for k, v in pending.items() if "." in k}, self.dir / name)
        for slot in slots:
            self.index[slot] = name
        atomic_write_text(self.dir / "index.json", json.dumps(self.index, sort_keys=True))
        return len(slots)

    def _shard(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._shards:
            self._shards[name] = load_tensors(self.dir / name)
        return self._shards[name]

    def lookup(self, keys: list[str]) -> ImageFeatures | None:
        """Features for ``keys`` in order, or None if any is missing (the caller then encodes)."""
        slots = [_slot(k) for k in keys]
        if not all(s in self.index for s in slots):
            self.misses += 1
            return None
        self.hits += 1
        parts = [self._shard(self.index[s]) for s in slots]
        embed = torch.stack([p[f"{s}.embed"] for p, s in zip(parts, slots)]).float()
        levels = sum(1 for k in parts[0] if k.startswith(f"{slots[0]}.high"))
        high = [torch.stack([p[f"{s}.high{lvl}"] for p, s in zip(parts, slots)]).float() for lvl in range(levels)]
        return ImageFeatures(image_embed=embed, high_res_feats=high)
