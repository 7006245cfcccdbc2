"""The manifest a run writes beside its output: inputs, backend and model, prompt versions, counts
kept and dropped per step, tokens spent."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def file_digest(path: str, limit: int = 1 << 26) -> dict[str, Any]:
    """Size and the SHA-256 of the first ``limit`` bytes (enough to tell inputs apart)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(limit))
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": h.hexdigest()}


@dataclass
class StepCounts:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count

    def as_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
        }


@dataclass
class Manifest:
    command: str
    inputs: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    backend: dict[str, Any] | None = None
    prompts: dict[str, int] = field(default_factory=dict)  # prompt name -> version used
    settings: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepCounts] = field(default_factory=dict)  # e.g. "regions", "filter:length"
    counts: Counter = field(default_factory=Counter)  # free counters: records_in, resumed, ...
    usage: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line per malformed input entry skipped
    started: float = field(default_factory=time.time)

    def add_input(self, path: str) -> None:
        self.inputs.append(file_digest(path))

    def step(self, name: str) -> StepCounts:
        return self.steps.setdefault(name, StepCounts())

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "argv": sys.argv,
            "inputs": self.inputs,
            "outputs": [os.path.abspath(p) for p in self.outputs],
            "backend": self.backend,
            "prompts": dict(sorted(self.prompts.items())),
            "settings": self.settings,
            "steps": {k: v.as_dict() for k, v in self.steps.items()},
            "counts": dict(sorted(self.counts.items())),
            "usage": self.usage,
            "problems": self.problems,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 3),
        }

    def write(self, path: str) -> dict[str, Any]:
        data = self.as_dict()
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
        return data


def manifest_path(out: str) -> str:
    """``out.jsonl`` -> ``out.manifest.json``."""
    stem = out[: -len(".jsonl")] if out.endswith(".jsonl") else out
    return f"{stem}.manifest.json"


def merge_manifests(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several shard manifests: usage, counts and per-step kept/dropped summed."""
    usage: Counter = Counter()
    counts: Counter = Counter()
    steps: dict[str, dict[str, Any]] = {}
    for m in manifests:
        usage.update(m.get("usage", {}))
        counts.update(m.get("counts", {}))
        for name, step in m.get("steps", {}).items():
            into = steps.setdefault(name, {"kept": 0, "dropped": Counter()})
            into["kept"] += step["kept"]
            into["dropped"].update(step["dropped"])
    return {
        "command": "merge",
        "parts": len(manifests),
        "backends": sorted({json.dumps(m.get("backend"), sort_keys=True) for m in manifests if m.get("backend")}),
        "prompts": sorted({f"{k}.v{v}" for m in manifests for k, v in m.get("prompts", {}).items()}),
        "usage": dict(sorted(usage.items())),
        "counts": dict(sorted(counts.items())),
        "steps": {
            k: {
                "kept": v["kept"],
                "dropped": dict(sorted(v["dropped"].items())),
                "dropped_total": sum(v["dropped"].values()),
            }
            for k, v in steps.items()
        },
    }
