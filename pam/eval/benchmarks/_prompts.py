"""Judge prompts stored as data files in ``prompts/``, each naming the official file it comes from."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def load_prompt(name: str) -> dict:
    """The prompt file ``prompts/<name>.json``: its texts, settings and ``source`` (repo, path, commit)."""
    path = resources.files(__package__).joinpath("prompts", f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"judge prompt file prompts/{name}.json is missing from the pam package")
    doc = json.loads(path.read_text(encoding="utf-8"))
    source = doc.get("source") or {}
    if not all(source.get(k) for k in ("repo", "path", "commit")):
        raise ValueError(f"prompts/{name}.json: 'source' must name the repo, path and commit it comes from")
    return doc
