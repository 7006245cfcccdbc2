"""Typed schemas behind the training YAML, validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ..utils.config import RENAMED_FIELDS, ConfigError
from ..utils.config import build_config as _build
from ..utils.config import check as _check

ENGINES = ("auto", "single", "ddp", "deepspeed")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")
WANDB_MODES = ("offline", "online", "disabled")
WANDB_ENV_MODES = (*WANDB_MODES, "dryrun", "run", "shared")  # what wandb itself accepts in $WANDB_MODE
# the hooks `trainer.hooks` may name, in their default order (pam/train/hooks.py:HOOKS builds them
# and checks it has exactly these, so this module need not import hooks.py)
HOOK_NAMES = ("checkpointing", "skip_report", "metrics_logger", "curves_plot", "final_evaluation")
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "betas": [0.9, 0.999], "eps": 1.0e-8}


@dataclass
class LoraConfig:
    r: int = 16  # rank of the adapters
    alpha: int = 32  # scaling numerator
    dropout: float = 0.05
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class StageConfig:
    name: str = "stage1"  # label in logs and folder names
    trainable: list = field(default_factory=list)  # fnmatch patterns of parameters that train
    frozen: list = field(default_factory=list)  # patterns frozen even if matched by `trainable`
    lr: float = 1e-4  # peak learning rate
    lr_groups: dict = field(default_factory=dict)  # pattern -> own peak lr
    weight_decay: float = 0.0
    no_decay: list = field(default_factory=list)  # patterns exempt from weight decay
    schedule: str = "cosine"  # cosine | linear | constant, after linear warm-up
    warmup_ratio: float = 0.03  # share of max_steps spent warming up
    min_lr_ratio: float = 0.0  # floor of the decay, as a share of the peak lr
    init_from: str | None = None  # PAM checkpoint folder of the previous stage
    lora: LoraConfig | None = None  # LoRA on the LLM instead of full fine-tuning
    max_steps: int = 100  # optimiser steps in this stage
    max_length: int | None = None  # overrides model.max_length for this stage
    optimizer: dict = field(
        default_factory=lambda: dict(DEFAULT_OPTIMIZER)
    )  # a `_partial_` Hydra entry, called with (param_groups, lr=lr)

    def validate(self) -> None:
        _check(bool(self.trainable), "stage.trainable", "must name at least one parameter pattern")
        _check(
            isinstance(self.optimizer.get("_target_"), str) and self.optimizer.get("_partial_") is True,
            "stage.optimizer",
            "must be a Hydra entry with `_target_` and `_partial_: true`",
        )
        _check_optimizer_entry(self.optimizer)
        _check(self.lr > 0, "stage.lr", "must be > 0")
        _check(self.schedule in SCHEDULES, "stage.schedule", f"must be one of {SCHEDULES}")
        _check(0 <= self.warmup_ratio < 1, "stage.warmup_ratio", "must be in [0, 1)")
        _check(self.max_steps >= 1, "stage.max_steps", "must be >= 1")


def _check_optimizer_entry(entry: dict) -> None:
    """The optimiser class must import and take every key given (it is called later with
    ``(param_groups, lr=...)``), so a misspelt keyword fails at start-up, not after the model build."""
    import difflib
    import inspect

    from hydra.utils import get_class

    target = entry["_target_"]
    try:
        cls = get_class(target)
    except Exception:  # hydra raises ImportError or ValueError, depending on the part missing
        raise ConfigError(f"stage.optimizer._target_: cannot import the class {target!r}") from None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n in params if n not in ("self", "params")]
    for key in entry:
        if key.startswith("_") or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; {cls.__name__} takes {known}"
        raise ConfigError(f"stage.optimizer.{key}: {cls.__name__} has no argument {key!r}{hint}")


@dataclass
class WandbConfig:
    mode: str | None = None  # offline | online | disabled; null: $WANDB_MODE if set, else offline
    project: str = "pam"
    name: str | None = None  # run name; defaults to the run folder's name
    tags: list = field(default_factory=list)


def wandb_mode(cfg: WandbConfig) -> str:
    """The mode wandb runs in: ``trainer.logging.wandb.mode`` when set, else ``$WANDB_MODE``, else offline."""
    return cfg.mode or os.environ.get("WANDB_MODE") or "offline"


@dataclass
class LoaderConfig:
    """``trainer.loader``: the DataLoader options of the training and validation loaders
    (pam/train/data.py:make_loader resolves the ``null`` ones against the device)."""

    num_workers: int = 0  # worker processes per rank; 0 loads in the training process
    pin_memory: bool | None = None  # page-locked batches for non-blocking GPU copies; null: on when the device is CUDA
    persistent_workers: bool | None = None  # keep workers across epochs and validations; null: on with workers
    prefetch_factor: int | None = None  # batches each worker loads ahead; null: 2 with workers; needs workers

    def validate(self) -> None:
        _check(self.num_workers >= 0, "trainer.loader.num_workers", f"must be >= 0, got {self.num_workers}")
        _check(
            self.prefetch_factor is None or self.num_workers > 0,
            "trainer.loader.prefetch_factor",
            "only applies with num_workers > 0 (set it to null, or add workers)",
        )
        _check(
            self.prefetch_factor is None or self.prefetch_factor >= 1,
            "trainer.loader.prefetch_factor",
            f"must be >= 1, got {self.prefetch_factor}",
        )
        _check(
            not self.persistent_workers or self.num_workers > 0,
            "trainer.loader.persistent_workers",
            "is true but num_workers is 0: there are no workers to keep (use null or false)",
        )


@dataclass
class CheckpointConfig:
    """``trainer.checkpoint``: what pam/train/state.py:CheckpointManager saves, keeps and resumes from."""

    every: int = 0  # steps between step checkpoints; 0 = only at the end of each stage
    keep_last: int = 2  # step checkpoints kept (the best one is kept besides)
    best_metric: str = "val/loss"  # metric that picks the best checkpoint
    best_mode: str = "min"  # min | max
    resume: str = "auto"  # auto (latest intact checkpoint in output_dir) | never | a checkpoint folder
    min_free_disk_gb: float = 1.0  # free space output_dir must have at start-up; 0 skips the check

    def validate(self) -> None:
        _check(self.every >= 0, "trainer.checkpoint.every", "must be >= 0")
        _check(self.keep_last >= 1, "trainer.checkpoint.keep_last", "must be >= 1")
        _check(self.best_mode in ("min", "max"), "trainer.checkpoint.best_mode", "must be min or max")
        _check(self.min_free_disk_gb >= 0, "trainer.checkpoint.min_free_disk_gb", "must be >= 0")

    def due(self, stage_step: int, max_steps: int) -> bool:
        """A step checkpoint is written after ``stage_step``: every ``every`` steps and at the stage's end."""
        return bool(self.every and stage_step % self.every == 0) or stage_step == max_steps


@dataclass
class ValidationConfig:
    """``trainer.validation``: pam/train/validate.py:Validator, on the data config's ``val`` split."""

    every: int = 0  # steps between validations; 0 = only at the end of each stage
    max_batches: int = 0  # cap on validation batches per rank; 0 = the whole split

    def validate(self) -> None:
        _check(self.every >= 0, "trainer.validation.every", "must be >= 0")
        _check(self.max_batches >= 0, "trainer.validation.max_batches", "must be >= 0")


@dataclass
class LoggingConfig:
    """``trainer.logging``: pam/train/hooks.py:MetricsLogger (metrics.jsonl, progress bar, wandb)."""

    every: int = 10  # steps between metric lines (validation steps and a stage's last step always log)
    progress_bar: bool = True  # tqdm bar on rank 0
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def validate(self) -> None:
        _check(self.every >= 1, "trainer.logging.every", "must be >= 1")
        _check(
            self.wandb.mode is None or self.wandb.mode in WANDB_MODES,
            "trainer.logging.wandb.mode",
            f"must be null or one of {WANDB_MODES}",
        )
        env = os.environ.get("WANDB_MODE")
        if self.wandb.mode is None and env and env not in WANDB_ENV_MODES:
            raise ConfigError(
                f"environment variable WANDB_MODE={env!r} must be one of {WANDB_ENV_MODES} "
                "(or set trainer.logging.wandb.mode)"
            )


@dataclass
class EvaluationConfig:
    """``trainer.evaluation``: the benchmark run at the end of training (pam/train/hooks.py:FinalEvaluation)."""

    enabled: bool = True  # generate on the test split and write metrics.json, report.md
    max_samples: int = 0  # cap on evaluated test samples; 0 = all

    def validate(self) -> None:
        _check(self.max_samples >= 0, "trainer.evaluation.max_samples", "must be >= 0")


# flat trainer keys that moved into a section: old key -> new dotted key (a config naming one fails at start-up)
RENAMED = {
    "num_workers": "loader.num_workers",
    "pin_memory": "loader.pin_memory",
    "persistent_workers": "loader.persistent_workers",
    "prefetch_factor": "loader.prefetch_factor",
    "save_every": "checkpoint.every",
    "keep_last": "checkpoint.keep_last",
    "best_metric": "checkpoint.best_metric",
    "best_mode": "checkpoint.best_mode",
    "resume": "checkpoint.resume",
    "min_free_disk_gb": "checkpoint.min_free_disk_gb",
    "val_every": "validation.every",
    "val_max_batches": "validation.max_batches",
    "log_every": "logging.every",
    "progress_bar": "logging.progress_bar",
    "wandb": "logging.wandb",
    "evaluate_at_end": "evaluation.enabled",
    "eval_max_samples": "evaluation.max_samples",
}


@dataclass
class TrainerConfig:
    """``trainer``: the loop's own settings, and one section per component the trainer builds."""

    output_dir: str = "runs/default"  # run folder: checkpoints, metrics.jsonl, plots, report
    seed: int = 0
    engine: str = "auto"  # auto (ddp when WORLD_SIZE > 1) | single | ddp | deepspeed
    deepspeed_config: str | None = None  # JSON in configs/deepspeed/, "auto" values filled in
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on GPU; DeepSpeed's own under deepspeed)
    global_batch_size: int = 8  # regions per optimiser step, over all processes
    micro_batch_size: int = 4  # regions per forward pass per process
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    feature_cache: str | None = None  # folder for cached SAM 2 image features; None disables
    max_nonfinite_in_a_row: int = 5  # NaN/Inf steps skipped in a row before the run stops; 0 stops at the first
    dist_timeout_s: float = 600.0  # seconds a collective waits for the other ranks; a dead node fails the run then
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # hooks (pam/train/hooks.py:HOOKS) in the order they run at each event; the loop validates
    # before them (pam/train/validate.py), so checkpoint and log see val/ metrics; evaluation runs last
    hooks: list = field(default_factory=lambda: list(HOOK_NAMES))

    def validate(self) -> None:
        _check(self.engine in ENGINES, "trainer.engine", f"must be one of {ENGINES}")
        _check(self.precision in PRECISIONS, "trainer.precision", f"must be one of {PRECISIONS}")
        _check(
            self.global_batch_size >= 1 and self.micro_batch_size >= 1,
            "trainer.global_batch_size",
            "and micro_batch_size must be >= 1",
        )
        for section in (self.loader, self.checkpoint, self.validation, self.logging, self.evaluation):
            section.validate()
        _check(self.max_nonfinite_in_a_row >= 0, "trainer.max_nonfinite_in_a_row", "must be >= 0")
        _check(self.dist_timeout_s > 0, "trainer.dist_timeout_s", "must be > 0")
        _check(
            "validation" not in self.hooks,
            "trainer.hooks",
            "no longer lists `validation`: the loop validates every trainer.validation.every steps",
        )
        unknown = [h for h in self.hooks if h not in HOOK_NAMES]
        _check(
            not unknown and len(set(self.hooks)) == len(self.hooks),
            "trainer.hooks",
            f"must name distinct hooks among {sorted(HOOK_NAMES)}, got unknown {unknown}",
        )
        _check(
            self.engine != "deepspeed" or self.deepspeed_config is not None,
            "trainer.deepspeed_config",
            "is required with engine=deepspeed",
        )

    def accumulation(self, world_size: int) -> int:
        """Gradient-accumulation steps so that micro * accum * world == global batch."""
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"config field `trainer.global_batch_size` ({self.global_batch_size}) must be a multiple of "
                f"micro_batch_size x world_size ({self.micro_batch_size} x {world_size})"
            )
        return self.global_batch_size // per_step


RENAMED_FIELDS.update({f"trainer.{old}": f"trainer.{new}" for old, new in RENAMED.items()})


def build_stage(data: dict, prefix: str = "stage.") -> StageConfig:
    """``prefix`` names the fields in errors (``stage.`` or ``next_stage.``)."""
    if not isinstance(data, dict):
        return _build(StageConfig, data, prefix)  # raises, naming the field
    data = dict(data)
    lora = data.pop("lora", None)  # `LoraConfig | None`: _build only recurses into plain dataclass fields
    stage = _build(StageConfig, data, prefix)
    if lora is not None:
        stage.lora = _build(LoraConfig, lora, f"{prefix}lora.")
    try:
        stage.validate()
    except ConfigError as e:
        raise ConfigError(str(e).replace("`stage.", f"`{prefix}", 1)) from e
    return stage


def build_trainer_config(data: dict) -> TrainerConfig:
    cfg = _build(TrainerConfig, data, "trainer.")
    cfg.validate()
    return cfg


def as_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def register_config_defaults() -> None:
    """Register the schemas' defaults with Hydra's ConfigStore as ``<group>/schema``, so the YAML
        files of configs/ keep only what differs (``defaults: [schema, _self_]``). The dataclasses are
        the one source of defaults; values are validated when the run starts (``build_config``), with
        errors naming the field. Stored as plain mappings so that validation stays in one place. The
    model's weight paths (``sam2.checkpoint``, ``llm.name_or_path``) are stored as mandatory (``???``)."""
    from hydra.core.config_store import ConfigStore

    from ..data.prompt_sampling import PromptSamplingConfig
    from ..modeling.config import PAMConfig

    cs = ConfigStore.instance()
    model = dataclasses.asdict(PAMConfig())
    # paths to local weights have no usable default: a config must give them (or null them)
    model["sam2"]["checkpoint"] = "???"
    model["llm"]["name_or_path"] = "???"
    cs.store(group="model", name="schema", node=model)
    cs.store(group="trainer", name="schema", node=dataclasses.asdict(TrainerConfig()))
    cs.store(group="stage", name="schema", node=dataclasses.asdict(StageConfig()))
    cs.store(group="data", name="schema", node={"prompt": dataclasses.asdict(PromptSamplingConfig())})


register_config_defaults()
