"""Save and load PAM models as self-describing safetensors folders.

A folder holds ``pam_config.json`` (the typed model config), ``model.safetensors`` (PAM's own
parameters: perceiver, projectors, newline embeddings and, unless omitted, the LLM),
``sam2.safetensors`` (unless omitted), ``tokenizer/`` and ``meta.json`` (what was omitted, plus
any caller metadata such as the training step).

A LoRA-tuned LLM is saved with its adapters and its LoRA settings in ``meta.json``; loading it
into a plain model wraps the LLM the same way, loads, and merges the adapters.

A frozen part with a source path (``sam2.checkpoint``, ``llm.name_or_path``) may be omitted: the
loader reads it from that path. Omitting a part that has trainable parameters is refused.
``export`` writes every part, so the folder loads with no other file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

from ..modeling.pam import PAM
from ..utils.frozen import trainable_parameter_names
from .integrity import has_manifest, verify_manifest, write_manifest
from .io import atomic_directory, atomic_write_text, load_tensors, save_tensors
from .strict import CheckpointMismatchError, check_state_dict, load_state_dict_strict

FORMAT = "pam-checkpoint-v1"


def _omittable(model: PAM, self_contained: bool) -> list[str]:
    if self_contained:
        return []
    parts = []
    if model.config.sam2.checkpoint:
        parts.append("sam2")
    if model.config.llm.name_or_path and not any(p.requires_grad for p in model.llm.parameters()):
        parts.append("llm")
    return parts


def _assert_frozen(module: nn.Module, name: str) -> None:
    trainable = trainable_parameter_names(module)
    if trainable:
        raise RuntimeError(
            f"refusing to omit {name} from the checkpoint: it has trainable parameters ({trainable[:3]} ...)"
        )


def _lora_settings(llm: nn.Module) -> dict | None:
    """The LoRA settings of a peft-wrapped LLM, None for a plain one."""
    config = getattr(llm, "peft_config", {}).get("default")
    if config is None:
        return None
    return {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": sorted(config.target_modules),
    }


def save_pam(
    model: PAM, tokenizer, out_dir: str | Path, *, self_contained: bool = False, metadata: dict | None = None
) -> Path:
    """Write ``model`` to ``out_dir`` atomically. Returns the folder."""
    omitted = _omittable(model, self_contained)
    for part in omitted:
        _assert_frozen(model.sam2.model if part == "sam2" else model.llm, part)
    config = copy.deepcopy(model.config)
    if "llm" not in omitted:
        hf = model.llm.config.to_dict()
        hf = {
            k: v
            for k, v in hf.items()
            if not k.startswith("_") and k not in ("architectures", "transformers_version", "dtype", "torch_dtype")
        }
        config.llm.config, config.llm.name_or_path = hf, None
    config.llm.tokenizer = None  # the tokenizer travels in the folder
    if "sam2" not in omitted:
        config.sam2.checkpoint = None
    state = {k: v for k, v in model.state_dict().items() if not ("llm" in omitted and k.startswith("llm."))}
    with atomic_directory(out_dir) as tmp:
        save_tensors(state, tmp / "model.safetensors")
        if "sam2" not in omitted:
            save_tensors(model.sam2.model.state_dict(), tmp / "sam2.safetensors")
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        config.save(tmp / "pam_config.json")
        meta = {"format": FORMAT, "omitted": omitted, "lora": _lora_settings(model.llm), **(metadata or {})}
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        write_manifest(tmp)  # last: sha256 of every file
    return Path(out_dir)


def export_pam(model: PAM, tokenizer, out_dir: str | Path, metadata: dict | None = None) -> Path:
    """A self-contained folder: every weight inside, no source paths needed."""
    return save_pam(model, tokenizer, out_dir, self_contained=True, metadata=metadata)


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a PAM checkpoint (no meta.json)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_pam_weights(model: PAM, folder: str | Path, meta: dict | None = None) -> None:
    """Load the weights of ``folder`` into an already built ``model`` (strict)."""
    folder = Path(folder)
    if has_manifest(folder):  # folders written before checksums existed load unchecked
        verify_manifest(folder)
    meta = meta or read_meta(folder)
    omitted = meta["omitted"]
    lora = meta.get("lora")
    if lora and _lora_settings(model.llm) is None:
        # a LoRA checkpoint into a plain LLM: wrap it the same way, load, then merge the adapters
        from peft import LoraConfig, get_peft_model

        model.llm = get_peft_model(model.llm, LoraConfig(**lora))
        _load_state(model, folder, omitted)
        model.llm = model.llm.merge_and_unload()
        return
    _load_state(model, folder, omitted)


def _load_state(model: PAM, folder: Path, omitted: list[str]) -> None:
    state = load_tensors(folder / "model.safetensors")
    expected = {k: v for k, v in model.state_dict().items() if not ("llm" in omitted and k.startswith("llm."))}
    check_state_dict(expected, state, source=str(folder / "model.safetensors"))
    model.load_state_dict(state, strict="llm" not in omitted)
    if "sam2" not in omitted:
        load_state_dict_strict(
            model.sam2.model, load_tensors(folder / "sam2.safetensors"), source=str(folder / "sam2.safetensors")
        )
    elif (folder / "sam2.safetensors").exists():
        raise CheckpointMismatchError(f"{folder}: meta.json says SAM 2 was omitted but sam2.safetensors exists")
