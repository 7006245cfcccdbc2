"""Versioned prompt files: ``<name>.v<N>.json`` holding ``name``, ``version``, ``system``, ``user``
(``string.Template`` text: ``$label``, ``$fields``, ...) and optional ``field_descriptions``.

A run records the (name, version) of every prompt it used; changing a prompt means adding a new
version file, so old runs stay reproducible and their cached answers stay valid.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.json$")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    system: str
    user: str
    field_descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.name}.v{self.version}"

    def render(self, **values: object) -> str:
        """The user text with ``$name`` placeholders filled; a missing value raises naming it."""
        try:
            return string.Template(self.user).substitute({k: str(v) for k, v in values.items()})
        except KeyError as err:
            raise ValueError(f"prompt {self.tag} needs a value for ${err.args[0]}") from err


def available(directory: Path = PROMPT_DIR) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in directory.glob("*.json"):
        m = _FILE.match(path.name)
        if m:
            out.setdefault(m["name"], []).append(int(m["version"]))
    return {k: sorted(v) for k, v in sorted(out.items())}


def load_prompt(name: str, version: int | None = None, directory: Path = PROMPT_DIR) -> Prompt:
    """Prompt ``name`` at ``version`` (default: the newest file)."""
    versions = available(directory).get(name)
    if not versions:
        raise FileNotFoundError(f"no prompt {name!r} in {directory}; available: {sorted(available(directory))}")
    version = versions[-1] if version is None else int(version)
    path = directory / f"{name}.v{version}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no version {version} of prompt {name!r} in {directory}; versions: {versions}")
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("name", "version", "system", "user") if k not in data]
    if missing or data["name"] != name or data["version"] != version:
        raise ValueError(f"{path}: needs name={name!r}, version={version} and keys system/user (missing {missing})")
    return Prompt(
        name=name,
        version=version,
        system=data["system"],
        user=data["user"],
        field_descriptions=dict(data.get("field_descriptions", {})),
    )
