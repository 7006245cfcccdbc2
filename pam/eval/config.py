"""Typed benchmark configs: generation settings shared by all, plus each benchmark's own fields.

The dataclasses are the one source of defaults. Registering a benchmark stores its config class's
defaults in Hydra's ConfigStore as the ``eval/<name>`` option (:func:`register_benchmark_config`),
so the eval group of the config tree needs no YAML dumps; a file ``configs/eval/<name>.yaml`` would
hold only differences. :func:`load_config` composes ``eval=<name>`` with Hydra, applies overrides
(Hydra ``key=value`` strings or a nested mapping) and validates, so a typo fails at start-up naming
the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.config import ConfigError, build_config, compose_config, merge_dicts

EVAL_ROOT = "evaluate"  # configs/evaluate.yaml: the run settings of `pam eval` around the eval group


@dataclass
class GenerationConfig:
    task: str | None = "detailed_caption"  # PAM task prompt (pam.processing.prompts.Task); None = the benchmark's text
    language: str = "en"  # prompt language
    max_new_tokens: int = 512  # generated tokens per answer (detailed captions need hundreds)
    do_sample: bool = False  # sampling off = greedy decoding
    temperature: float = 1.0  # only with do_sample
    top_p: float = 1.0  # only with do_sample
    num_beams: int = 1  # beam search width
    seed: int = 0  # each item is generated after torch.manual_seed(hash(seed, item id))
    track_frames: int = 32  # frames SAM 2 tracks per clip; the rule: pam.data.datasets.RegionDatasetConfig.track_frames
    batch_size: int = 1  # items per generate call, where the benchmark batches

    def validate(self, where: str = "generation") -> None:
        from ..processing.prompts import LANGUAGES, Task

        if self.task is not None and self.task not in {t.value for t in Task}:
            raise ValueError(
                f"{where}.task: unknown task {self.task!r}; expected one of {[t.value for t in Task]} or null"
            )
        if self.language not in LANGUAGES:
            raise ValueError(f"{where}.language: expected one of {LANGUAGES}, got {self.language!r}")
        for name in ("max_new_tokens", "num_beams", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{where}.{name} must be >= 1, got {getattr(self, name)}")
        if self.track_frames < 0:
            raise ValueError(
                f"{where}.track_frames must be 0 (every frame) or a number of frames >= the model's "
                f"video_num_frames, got {self.track_frames}"
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"{where}: need temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def check_llm_frames(self, video_num_frames: int, where: str = "generation") -> None:
        """``track_frames`` against the model's ``video_num_frames`` (checked when the model is known)."""
        if self.track_frames != 0 and self.track_frames < video_num_frames:
            raise ValueError(
                f"{where}.track_frames is {self.track_frames}, fewer than the {video_num_frames} frames the LLM sees "
                "(the model's video_num_frames); use 0 (every frame) or a value >= video_num_frames"
            )

    def hf_kwargs(self) -> dict:
        """Keyword arguments for Hugging Face ``generate`` (besides max_new_tokens)."""
        kwargs: dict[str, Any] = {"do_sample": self.do_sample, "num_beams": self.num_beams}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass
class JudgeConfig:
    backend: str = "openai"  # "openai" (any OpenAI-compatible endpoint) or "transformers" (a local model folder)
    model: str = "gpt-4o"  # model name sent to the endpoint, or the local model folder
    base_url: str | None = None  # endpoint, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = "OPENAI_API_KEY"  # environment variable holding the key; null = a server without keys
    timeout_s: float = 60.0  # per request
    max_tries: int = 5  # tries per request (429, 5xx, timeouts and connection errors are retried)
    backoff_s: float = 1.0  # first retry delay, doubled each try
    requests_per_minute: float | None = None  # client-side rate limit; null = none
    temperature: float = 0.0  # judge sampling temperature
    max_tokens: int = 512  # judge answer length
    cache_dir: str | None = None  # on-disk response cache; None = <out>/judge_cache
    max_workers: int = 4  # concurrent judge requests


@dataclass
class BenchmarkConfig:
    """Fields every benchmark has; subclasses add their own."""

    name: str = ""  # registry name; must equal the benchmark's
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # how PAM answers
    judge: JudgeConfig | None = None  # the judge LLM, for benchmarks scored by one

    def validate(self) -> None:
        self.generation.validate(f"{self.name}.generation")


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping with the project's one typed-config builder; unknown
    keys and wrong types raise :class:`~pam.utils.config.ConfigError` naming the dotted field."""
    return build_config(cls, data, f"{where}.")


def register_config_node(group: str, name: str, node: dict) -> None:
    """Store ``node`` (plain data) as option ``name`` of config group ``group`` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=group, name=name, node=node)


def register_benchmark_config(name: str, config_class: type) -> None:
    """Store ``config_class``'s defaults as the ``eval/<name>`` option, and ``GenerationConfig``'s as
    ``generation/schema`` (lerobot's ``register_subclass``, in Hydra's terms). Plain data is stored, so
    validation stays in :func:`~pam.utils.config.build_config`. Called by the benchmark registry."""
    register_config_node("eval", name, dataclasses.asdict(config_class(name=name)))
    register_config_node("generation", "schema", dataclasses.asdict(GenerationConfig()))


def eval_override(text: str) -> str:
    """A benchmark-relative Hydra override (``generation.max_new_tokens=64``, ``+x=1``, ``~judge``) as
    one on the composed tree (``eval.generation.max_new_tokens=64``); ``eval.``-prefixed ones pass."""
    prefix = text[: len(text) - len(text.lstrip("+~"))]
    body = text[len(prefix) :]
    return text if body.startswith("eval.") or body.startswith("eval=") else f"{prefix}eval.{body}"


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["generation.max_new_tokens=64", ...]`` into a nested dict, values read by Hydra's override
    grammar (``null``, ``true``, ``[a,b]``, quoted strings). Sweeps and deletions are refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    out: dict = {}
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides or []))
    except HydraException as err:
        raise ValueError(f"bad override: {str(err).splitlines()[0]}") from None
    for item in parsed:
        if item.is_sweep_override() or item.is_delete():
            raise ValueError(f"override {item.input_line!r}: sweeps and deletions need `pam eval` (Hydra compose)")
        node = out
        *head, last = item.key_or_group.split(".")
        for key in head:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item.input_line}: {key} is not a mapping")
        node[last] = item.value()
    return out


def config_from_node(name: str, config_class: type, data: dict) -> Any:
    """The benchmark's typed, validated config from its composed ``eval`` node (a plain dict)."""
    if isinstance(data.get("generation"), dict) and "video_num_frames" in data["generation"]:
        raise ConfigError(
            f"{name}.generation.video_num_frames was replaced by {name}.generation.track_frames (the frames SAM 2 "
            "tracks per clip; the LLM sees the model's video_num_frames of them, selected by the predictor)"
        )
    data.setdefault("name", name)
    if data["name"] != name:
        raise ValueError(f"eval.name is {data['name']!r} but the benchmark is {name!r}")
    config = from_dict(config_class, data, name)
    config.validate()
    return config


def load_config(
    name: str, config_class: type, overrides: dict | list[str] | None = None, path: str | Path | None = None
) -> Any:
    """The benchmark's config composed by Hydra (``eval=<name>`` over the config tree), then ``path``
    (a YAML of differences) and ``overrides`` (benchmark-relative Hydra strings, or a nested mapping
    merged last), typed and validated."""
    from omegaconf import OmegaConf

    register_benchmark_config(name, config_class)
    strings = [eval_override(o) for o in overrides] if isinstance(overrides, (list, tuple)) else []
    cfg = compose_config(overrides=[f"+eval={name}", *strings])
    data = OmegaConf.to_container(cfg.eval, resolve=True)
    if path is not None:
        import yaml

        data = merge_dicts(data, yaml.safe_load(Path(path).read_text()) or {})
    if isinstance(overrides, dict):
        data = merge_dicts(data, overrides)
    return config_from_node(name, config_class, data)
