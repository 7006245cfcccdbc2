"""The config tree: every option of every group composes and validates, no YAML file repeats a
default (of its schema or of the configs it extends), the folder stays small, the launcher composes
what scripts/train.py composes, and the benchmark table of docs/evaluation.md is current."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import pam.train.config  # noqa: F401  (registers the training schemas)
from pam.eval import benchmark_class, list_benchmarks
from pam.eval.config import EVAL_ROOT, config_from_node, load_config
from pam.modeling.config import PAMConfig
from pam.utils.config import CONFIG_DIR, ConfigError, compose_config, load_group_yaml

MAX_YAML_LINES = 450
YAML_FILES = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml"))
ROOTS = {"train": "train", "evaluate": EVAL_ROOT}


def _package(rel: Path, text: str) -> str:
    """Where a file's keys land in the composed tree (Hydra: the header, else the group path)."""
    for line in text.splitlines():
        if line.startswith("# @package"):
            package = line.split(None, 2)[2].strip()
            return "" if package == "_global_" else package
    return "" if len(rel.parts) == 1 else ".".join(rel.parts[:-1])


def _compose_with(rel: Path, config_dir: Path):
    """The tree the file ``rel`` takes part in: a root config, an experiment, or its group alone."""
    group, name = "/".join(rel.parts[:-1]), rel.stem
    if not group:
        return compose_config(ROOTS[name], config_dir=config_dir, **_hydra(name))
    if group == "experiment":
        return compose_config("train", [f"experiment={name}"], config_dir=config_dir)
    if group == "eval":
        return compose_config(EVAL_ROOT, [f"eval={name}"], config_dir=config_dir)
    if group.startswith("hydra/"):
        return compose_config("train", [f"{group}={name}"], config_dir=config_dir, **_hydra(group))
    return compose_config(overrides=[f"+{group}={name}"], config_dir=config_dir)


def _hydra(name: str) -> dict:
    return {"return_hydra_config": True} if name == "train" or name.startswith("hydra") else {}


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def _select(cfg, dotted: str):
    node = OmegaConf.to_container(cfg, resolve=False)
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return KeyError
        node = node[key]
    return node


@pytest.fixture(scope="module")
def stripped_tree(tmp_path_factory) -> Path:
    """A copy of configs/ in which one file at a time is cut down to its header and defaults list."""
    list_benchmarks()  # registers every benchmark's eval option
    root = tmp_path_factory.mktemp("configs") / "configs"
    shutil.copytree(CONFIG_DIR, root)
    return root


def test_no_yaml_repeats_a_default(stripped_tree):
    """A key a file sets to the value the tree already has without it (from the schema, a parent
    file, a plugin or Hydra itself) is a repeated default."""
    repeats = []
    for rel in YAML_FILES:
        text = (CONFIG_DIR / rel).read_text()
        body = yaml.safe_load(text) or {}
        defaults = body.pop("defaults", None)
        if not body:
            continue
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("# @package"))
        (stripped_tree / rel).write_text(header + (yaml.safe_dump({"defaults": defaults}) if defaults else ""))
        try:
            base = _compose_with(rel, stripped_tree)
        finally:
            shutil.copyfile(CONFIG_DIR / rel, stripped_tree / rel)
        package = _package(rel, text)
        for dotted, value in _leaves(body):
            full = f"{package}.{dotted}" if package else dotted
            before = _select(base, full)
            if before is not KeyError and before == value:
                repeats.append(f"configs/{rel}: {dotted}: {value!r}")
    assert not repeats, "YAML values equal to the default they override (delete them):\n" + "\n".join(repeats)


def test_config_folder_stays_small():
    lines = sum(len((CONFIG_DIR / rel).read_text().splitlines()) for rel in YAML_FILES)
    assert lines < MAX_YAML_LINES, f"configs/ has {lines} YAML lines (limit {MAX_YAML_LINES})"


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")))
def test_every_model_option_composes_into_a_valid_config(name):
    data = load_group_yaml(CONFIG_DIR / "model" / f"{name}.yaml", schema=PAMConfig().to_dict())
    assert isinstance(PAMConfig.from_dict(data), PAMConfig)


def test_fast_presets_differ_from_their_base_in_the_image_shuffle_only():
    for fast, base in (("fast_1.5b", "pam_1.5b"), ("fast_3b", "pam_3b"), ("fast_debug", "debug")):
        a = load_group_yaml(CONFIG_DIR / "model" / f"{fast}.yaml", schema=PAMConfig().to_dict())
        b = load_group_yaml(CONFIG_DIR / "model" / f"{base}.yaml", schema=PAMConfig().to_dict())
        diff = {k for (k, v), (k2, v2) in zip(sorted(_leaves(a)), sorted(_leaves(b))) if v != v2 or k != k2}
        assert diff == {"perceiver.image_shuffle"}, (fast, diff)
        assert a["perceiver"]["image_shuffle"] == 4 != b["perceiver"]["image_shuffle"]


def test_load_group_yaml_outside_configs_uses_the_given_schema(tmp_path):
    group = tmp_path / "widgets"
    group.mkdir()
    (group / "base.yaml").write_text("defaults: [schema, _self_]\nsize: 3\n")
    (group / "big.yaml").write_text("defaults: [base, _self_]\nsize: 9\nnested: {b: 5}\n")
    schema = {"size": 1, "color": "red", "nested": {"a": 1, "b": 2}}
    assert load_group_yaml(group / "big.yaml", schema=schema) == {"size": 9, "color": "red", "nested": {"a": 1, "b": 5}}


@pytest.mark.parametrize(
    "name",
    [
        "activitynet_stream",
        "dlc_bench",
        "ferret",
        "hc_stvg",
        "lvis",
        "paco",
        "quickstart",
        "ref_l4",
        "refcocog",
        "vg",
        "videorefer_d",
        "videorefer_q",
    ],
)
def test_each_benchmark_is_an_eval_option_holding_its_config_class_defaults(name):
    assert name in list_benchmarks()
    cls = benchmark_class(name)
    cfg = compose_config(EVAL_ROOT, [f"eval={name}"])
    node = OmegaConf.to_container(cfg.eval, resolve=True)
    assert config_from_node(name, cls.config_class, node) == cls.config_class(name=name)


def test_benchmark_overrides_use_hydra_grammar_and_name_bad_fields():
    cls = benchmark_class("quickstart").config_class
    config = load_config(
        "quickstart", cls, ["generation.max_new_tokens=9", "tasks=[category,short_caption]", "similarity_model=null"]
    )
    assert (
        config.generation.max_new_tokens == 9
        and config.tasks == ("category", "short_caption")
        and config.similarity_model is None
    )
    assert load_config("quickstart", cls, {"generation": {"seed": 3}}).generation.seed == 3
    with pytest.raises(ConfigError, match=r"eval\.generation\.max_tokens"):
        load_config("quickstart", cls, ["generation.max_tokens=9"])
    with pytest.raises(ConfigError, match=r"quickstart\.generation\.max_new_tokens"):
        load_config("quickstart", cls, ["generation.max_new_tokens=many"])


def test_pam_eval_composes_the_tree_from_flags_overrides_and_set(tmp_path):
    from pam.cli import build_parser
    from pam.cli.eval import compose_eval

    argv = [
        "eval",
        "lvis",
        "--checkpoint",
        "ck",
        "--out",
        str(tmp_path),
        "data_path=ann.json",
        "generation.max_new_tokens=7",
        "--set",
        "text_rule=videorefer",
        "limit=3",
        "--judge-model",
        "m",
    ]
    args, extra = build_parser().parse_known_args(argv)
    args.extra = extra
    cfg, bench = compose_eval(args)
    assert (cfg.checkpoint, cfg.data_path, cfg.out, cfg.limit) == ("ck", "ann.json", str(tmp_path), 3)
    assert (
        bench.name == "lvis" and bench.config.generation.max_new_tokens == 7 and bench.config.text_rule == "videorefer"
    )
    assert bench.config.judge is not None and bench.config.judge.model == "m"
    args, extra = build_parser().parse_known_args(
        ["eval", "eval=paco", "checkpoint=ck", "data_path=a", "out=o"]
    )  # scripts/eval.py
    args.extra = extra
    assert compose_eval(args)[1].name == "paco"


def test_pam_train_prints_the_tree_scripts_train_composes(capsys):
    from pam.cli import main

    overrides = ["experiment=quickstart", "stage.lr=0.002", "model.perceiver.depth=1"]
    assert main(["train", "--cfg", "job", *overrides]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = OmegaConf.to_container(compose_config("train", overrides), resolve=False)
    assert printed == expected and printed["stage"]["lr"] == 0.002


def test_cli_rejects_unknown_flags_before_heavy_imports(capsys):
    from pam.cli import main

    with pytest.raises(SystemExit) as info:
        main(["eval", "lvis", "--bogus"])
    assert info.value.code == 2 and "--bogus" in capsys.readouterr().err


def test_compose_works_inside_a_running_hydra_app():
    """The trainer's final evaluation composes a benchmark config while @hydra.main holds Hydra's
    global state: the state is set aside and put back."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        outer = GlobalHydra.instance().hydra
        assert load_config("lvis", benchmark_class("lvis").config_class).name == "lvis"
        assert GlobalHydra.instance().hydra is outer


@pytest.mark.parametrize("doc", ["docs/evaluation.md", "README.md"])
def test_benchmark_tables_are_current(doc):
    from pam.eval.registry import replace_table

    text = (Path(__file__).resolve().parents[1] / doc).read_text()
    assert replace_table(text) == text, f"{doc} is stale: run `pam eval --table --out {doc}`"
    for name in list_benchmarks():
        assert f"| `{name}` |" in text


def test_registry_metadata_defaults_are_empty_and_typed():
    from pam.eval.registry import Benchmark

    assert (Benchmark.official, Benchmark.options, Benchmark.notes, Benchmark.metrics) == ({}, {}, "", ())
    for name in list_benchmarks():
        cls = benchmark_class(name)
        assert set(cls.official) <= {"repo", "path", "commit"}, name
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in cls.options.items()), name
        assert dataclasses.is_dataclass(cls.config_class), name


def test_every_verb_help_names_its_config(capsys):
    from pam.cli import build_parser, main

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    for verb in verbs:
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        out = capsys.readouterr().out
        assert "config" in out.lower() and ".py" in out, verb


def test_pam_data_is_the_data_pipeline_command(capsys):
    from data_pipeline.cli import main as data_main
    from pam.cli import main

    assert main(["data", "prompts"]) == 0
    ours = capsys.readouterr().out
    assert data_main(["prompts"]) == 0
    assert ours == capsys.readouterr().out and ours.strip()
    with pytest.raises(SystemExit) as info:
        main(["data", "convert", "--help"])
    assert info.value.code == 0 and "usage: pam data convert" in capsys.readouterr().out
