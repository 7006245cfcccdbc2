"""Choose what trains by parameter-name patterns, and report it.

Patterns are shell-style (``fnmatch``) over ``named_parameters()`` names of the PAM module (SAM 2
is outside it and always frozen). Every pattern must match at least one parameter, so a typo in
a stage config fails at start-up instead of silently freezing something.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict

from torch import nn


def apply_trainable_patterns(model: nn.Module, patterns: list[str], frozen_patterns: list[str] = ()) -> list[str]:
    """Set ``requires_grad`` = name matches a pattern in ``patterns`` and none in ``frozen_patterns``.

    Returns the trainable parameter names.
    """
    check_patterns(model, patterns, frozen_patterns)
    trainable = []
    for name, p in model.named_parameters():
        on = any(fnmatch.fnmatchcase(name, pat) for pat in patterns) and not any(
            fnmatch.fnmatchcase(name, pat) for pat in frozen_patterns
        )
        p.requires_grad_(on)
        if on:
            trainable.append(name)
    return trainable


def check_patterns(model: nn.Module, patterns: list[str], frozen_patterns: list[str] = (), prefix: str = "") -> None:
    """Raise ValueError naming the first pattern (``{prefix}trainable`` / ``{prefix}frozen``) that matches no
    parameter."""
    names = [n for n, _ in model.named_parameters()]
    for group, pats in (("trainable", patterns), ("frozen", frozen_patterns)):
        for pat in pats:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                raise ValueError(
                    f"{prefix}{group} pattern {pat!r} matches no parameter; "
                    f"names look like {names[:3]} ... {names[-2:]}"
                )


def parameter_table(model: nn.Module, extra_frozen: dict[str, nn.Module] | None = None, depth: int = 1) -> str:
    """Markdown-ish table of trainable and frozen parameter counts per top-level module."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:depth])
        counts[key][0 if p.requires_grad else 1] += p.numel()
    for name, module in (extra_frozen or {}).items():
        counts[name][1] += sum(p.numel() for p in module.parameters())
    width = max(len(k) for k in counts) if counts else 6
    lines = [f"{'module':<{width}} | {'trainable':>14} | {'frozen':>14}", f"{'-' * width}-+-{'-' * 14}-+-{'-' * 14}"]
    total = [0, 0]
    for key in sorted(counts):
        t, f = counts[key]
        total[0] += t
        total[1] += f
        lines.append(f"{key:<{width}} | {t:>14,} | {f:>14,}")
    lines.append(f"{'total':<{width}} | {total[0]:>14,} | {total[1]:>14,}")
    return "\n".join(lines)
