"""Import contract inside pam/train: its modules form one-way layers, bottom to top, so there is no
import loop (function-level imports included). A module may import its own layer and any layer
below, never one above. A new module must be placed in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "pam" / "train"

LAYERS = [
    {"config", "distributed", "preflight", "freeze", "deepspeed_config", "plots", "sweep", "guards", "feature_cache"},
    {"sam2_teach"},  # the quick-start's taught SAM 2: no pam.train imports
    {"optim", "data", "state"},  # schemas and process groups below them
    {"engine", "validate"},  # optim, config, distributed, deepspeed_config; data
    {"report"},
    {"hooks"},  # config, data, plots, report
    {"trainer"},  # everything above
    {"run"},  # the entry: distributed, trainer
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def train_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of another pam.train module in ``path``, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                out += [(node.lineno, n) for n in names]
            elif node.level == 0 and node.module and node.module.startswith("pam.train."):
                out.append((node.lineno, node.module.split(".")[2]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[2]) for a in node.names if a.name.startswith("pam.train.")]
    return out


def test_every_module_has_a_layer():
    modules = {p.stem for p in TRAIN.glob("*.py")} - {"__init__"}
    assert modules <= set(RANK), f"place these pam/train modules in LAYERS: {sorted(modules - set(RANK))}"


def test_imports_within_pam_train_point_down():
    bad = []
    for path in sorted(TRAIN.glob("*.py")):
        if path.stem == "__init__":
            continue
        for line, target in train_imports(path):
            if target in RANK and RANK[target] > RANK[path.stem]:
                bad.append(f"pam/train/{path.name}:{line} imports {target} (layer {RANK[target]} > {RANK[path.stem]})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_and_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from .hooks import HOOKS\n\ndef f():\n    from .trainer import Trainer\n    import pam.train.run\n")
    assert train_imports(src) == [(1, "hooks"), (4, "trainer"), (5, "run")]
