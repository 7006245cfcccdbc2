"""Import contract: pam's subpackages form one-way layers (function-level imports included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PAM_ROOT = Path(__file__).resolve().parents[1] / "pam"

# Bottom to top: a module may import its own layer and any layer below, never one above.
LAYERS = [
    "pam.utils",  # jsonl, typed-config validation, token layout / frame selection, masks, visualisation
    "pam.clients",  # chat-completions client (imports only pam.utils)
    "pam.modeling",
    "pam.processing",
    "pam.data",
    "pam.checkpoints",
    "pam.api",  # build_pam, load_pam, load_released_pam
    "pam.inference",
    "pam.eval",
    "pam.train",
    "pam.serve",
    "pam.cli",
]
RANK = {name: i for i, name in enumerate(LAYERS)}


def _unit(module: str) -> str | None:
    """The layer a dotted module name belongs to (``pam`` itself is the top-level facade)."""
    parts = module.split(".")
    if parts[0] != "pam":
        return None
    if len(parts) == 1:
        return "pam"
    return f"pam.{parts[1]}"


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(PAM_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def pam_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import of a ``pam`` module in ``path``, at any depth."""
    name, is_pkg = _module_name(path)
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "pam"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    out.append((node.lineno, target))
                else:  # from . import x: x may be a submodule
                    out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            elif node.module and node.module.split(".")[0] == "pam":
                out.append((node.lineno, node.module))
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "pam"]
    return out


def import_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ["file:line", ...] (edges within a unit left out)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PAM_ROOT.rglob("*.py")):
        src = _unit(_module_name(path)[0])
        for line, module in pam_imports(path):
            dst = _unit(module)
            if dst and dst != src and dst != "pam":
                graph.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(PAM_ROOT.parent)}:{line}")
    return graph


def test_every_subpackage_has_a_layer():
    units = {_unit(_module_name(p)[0]) for p in PAM_ROOT.rglob("*.py")} - {"pam"}
    assert not units - set(RANK), f"add these to LAYERS in {__file__}: {sorted(units - set(RANK))}"


def test_imports_point_down_the_layers():
    bad = []
    for src, targets in import_graph().items():
        if src == "pam":  # the facade (pam/__init__.py) re-exports the public API lazily
            continue
        for dst, where in targets.items():
            if dst not in RANK or RANK[dst] > RANK[src]:
                bad += [f"{w}: {src} imports {dst} (a higher layer)" for w in where]
    assert not bad, "import layer violations:\n" + "\n".join(bad)


def test_no_cycle_between_subpackages():
    graph = {src: set(t) for src, t in import_graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pam"
    (pkg / "modeling").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "modeling" / "__init__.py").write_text("")
    (pkg / "modeling" / "x.py").write_text("def f():\n    from ..checkpoints.sam2 import load\n    return load\n")
    globals()["PAM_ROOT"] = pkg
    try:
        assert import_graph() == {"pam.modeling": {"pam.checkpoints": ["pam/modeling/x.py:2"]}}
    finally:
        globals()["PAM_ROOT"] = Path(__file__).resolve().parents[1] / "pam"


def test_public_api_is_lazy():
    import subprocess
    import sys

    code = (
        "import sys, pam; assert 'torch' not in sys.modules, 'import pam loaded torch'; "
        "from pam import PAMConfig, build_pam, load_pam, load_released_pam, PAMPredictor; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ----- one inference door ---------------------------------------------------------------------------
REPO = PAM_ROOT.parent
GENERATE_ALLOWED = {
    "pam/inference/predictor.py",  # the door
    "pam/clients/transformers_local.py",  # a judge/refinement chat model, not PAM
    "scripts/bench_inference.py",  # still times PAM.generate directly (to move onto the predictor)
}


def _generate_calls(path: Path) -> list[int]:
    """Lines of ``x.generate(...)`` calls whose receiver is not a predictor."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "generate":
            receiver = ast.unparse(node.func.value)
            if not receiver.split(".")[-1].endswith("predictor"):
                out.append(node.lineno)
    return out


def test_no_generate_call_outside_the_predictor_and_the_model():
    bad = []
    for path in sorted([*PAM_ROOT.rglob("*.py"), *(REPO / "scripts").rglob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel in GENERATE_ALLOWED or rel.startswith("pam/modeling/"):
            continue
        bad += [f"{rel}:{line}" for line in _generate_calls(path)]
    assert not bad, f".generate( outside the predictor and the model: {bad}"


def test_one_task_list_and_one_region_validator():
    """Task lists are written only in pam/processing/prompts.py; regions are checked only by
    pam.inference.regions.Region.checked."""
    literal = re.compile(r"""["']category["'],\s*["']explain["']""")
    tasks = [
        p.relative_to(REPO).as_posix() for p in PAM_ROOT.rglob("*.py") if literal.search(p.read_text(encoding="utf-8"))
    ]
    assert tasks == ["pam/processing/prompts.py"] or tasks == [], tasks
    outside = re.compile(r"x0 < x1")  # the box rule, written by the one validator only
    front_ends = [
        *(PAM_ROOT / "inference").rglob("*.py"),
        *(PAM_ROOT / "serve").rglob("*.py"),
        *(PAM_ROOT / "cli").rglob("*.py"),
        PAM_ROOT / "eval" / "generation.py",
        PAM_ROOT / "train" / "report.py",
        PAM_ROOT / "api.py",
    ]
    validators = sorted(
        p.relative_to(REPO).as_posix() for p in front_ends if outside.search(p.read_text(encoding="utf-8"))
    )
    assert validators == ["pam/inference/regions.py"], validators
