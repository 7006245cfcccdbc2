"""Decoding settings: upstream's defaults made explicit, the folder's generation_config.json, greedy.

Upstream PAM decodes with ``do_sample=True, temperature=0.1, max_new_tokens=512`` passed to
``generate``, on top of the model folder's ``generation_config.json`` (Hugging Face merges the
explicit arguments over the file). :func:`resolve_generation` reproduces that order: the file's
decoding fields, then upstream's three explicit values, then the caller's overrides.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# decoding fields read from a generation_config.json (token ids are PAM's own: <|im_end|>, pad)
FILE_FIELDS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "num_beams")


@dataclass
class GenerationSettings:
    do_sample: bool = True  # upstream samples...
    temperature: float | None = 0.1  # ...at temperature 0.1
    top_p: float | None = None  # None: transformers' default (1.0)
    top_k: int | None = None  # None: transformers' default (50)
    repetition_penalty: float | None = None
    num_beams: int = 1
    max_new_tokens: int = 512  # upstream's limit
    seed: int | None = 0  # torch seed set before each sampled generate call (None: not set)
    source: str = "upstream defaults"  # where the settings came from (reported, not used)

    @classmethod
    def greedy(cls, max_new_tokens: int = 512) -> GenerationSettings:
        return cls(do_sample=False, temperature=None, max_new_tokens=max_new_tokens, source="greedy")

    def validate(self) -> GenerationSettings:
        if self.max_new_tokens < 1:
            raise ValueError(f"generation.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and (self.temperature is None or self.temperature <= 0):
            raise ValueError(f"generation.temperature must be > 0 when sampling, got {self.temperature}")
        if self.num_beams < 1:
            raise ValueError("generation.num_beams must be >= 1")
        return self

    def model_kwargs(self) -> dict:
        """The keywords for ``PAM.generate(generation_kwargs=...)`` (max_new_tokens is separate)."""
        out = {"do_sample": self.do_sample, "num_beams": self.num_beams}
        if self.do_sample:
            for k in ("temperature", "top_p", "top_k"):
                if getattr(self, k) is not None:
                    out[k] = getattr(self, k)
        if self.repetition_penalty is not None:
            out["repetition_penalty"] = self.repetition_penalty
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_generation_config(folder: str | Path) -> dict:
    """The decoding fields of ``folder/generation_config.json`` ({} when the file is absent)."""
    path = Path(folder) / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return {k: raw[k] for k in FILE_FIELDS if raw.get(k) is not None}


def resolve_generation(folder: str | Path | None = None, *, greedy: bool = False, **overrides) -> GenerationSettings:
    """File fields < upstream's explicit ``do_sample/temperature/max_new_tokens`` < ``overrides``.

    ``greedy=True`` decodes greedily whatever the file says.
    """
    file_fields = read_generation_config(folder) if folder is not None else {}
    settings = GenerationSettings(**{k: v for k, v in file_fields.items() if k not in ("do_sample", "temperature")})
    if file_fields:
        settings.source = f"{Path(folder) / 'generation_config.json'} + upstream defaults"
    if greedy:
        settings = dataclasses.replace(settings, do_sample=False, temperature=None, source="greedy")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(GenerationSettings)})
    if unknown:
        raise ValueError(f"unknown generation setting(s) {unknown}")
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    log.info("generation settings (%s): %s", settings.source, settings.model_kwargs())
    return settings.validate()
