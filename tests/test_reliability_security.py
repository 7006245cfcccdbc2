"""Safe loading and no network: pickles that run code are refused by every loader, no remote code,
no bare torch.load, annotation paths stay under the data root, and tests reach loopback only."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from pam.checkpoints.io import load_tensors
from pam.checkpoints.sam2 import load_sam2_checkpoint
from pam.data.readers import read_jsonl, read_upstream_jsonl
from pam.data.schema import PathEscapeError, Record
from pam.train.state import CheckpointManager

from .helpers import netguard

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = [d for d in ("pam", "scripts", "data_pipeline") if (ROOT / d).is_dir()]


class WritesAFile:
    """Unpickling this calls ``Path.touch(canary)``: code execution at load time."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (Path.touch, (self.canary,))


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    canary = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": WritesAFile(canary)}, path)
    # the payload really runs under a full unpickle: the test would catch a loader that allowed it
    torch.load(path, weights_only=False)
    assert canary.exists()
    canary.unlink()
    return path, canary


def test_a_malicious_pickle_is_refused_by_every_loader(malicious, tmp_path, debug_bundle):
    path, canary = malicious
    with pytest.raises(ValueError, match=r"evil.pt: not a loadable SAM 2 checkpoint \(UnpicklingError"):
        load_sam2_checkpoint(debug_bundle.model.sam2.model, path)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    os.replace(path, ckpt / "trainer_state.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        CheckpointManager.load_trainer_state(ckpt)
    with pytest.raises(ValueError, match="not a readable safetensors file"):  # PAM weights are safetensors only
        load_tensors(ckpt / "trainer_state.pt")
    assert not canary.exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_remote_code_and_no_unsafe_torch_load_in_the_code():
    """Every torch.load passes weights_only=True, every trust_remote_code is the literal False."""
    files = [p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 50
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name == "load" and owner == "torch":
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{where}: torch.load without weights_only=True")
            if "trust_remote_code" in kw and not (
                isinstance(kw["trust_remote_code"], ast.Constant) and kw["trust_remote_code"].value is False
            ):
                bad.append(f"{where}: trust_remote_code is not the literal False")
            if any(k.arg is None for k in call.keywords) and name in ("from_pretrained",):
                continue  # **kwargs into from_pretrained: checked by the text scan below
        text = path.read_text()
        if "trust_remote_code=True" in text.replace(" ", ""):
            bad.append(f"{path.relative_to(ROOT)}: trust_remote_code=True")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------- paths under the data root
def _line(**fields) -> str:
    video = "video" in fields or "frames" in fields
    region = {"boxes": {"0": [1, 1, 4, 4]}} if video else {"box": [1, 1, 4, 4]}
    rec = {"id": "r1", "regions": [{**region, "category": "x"}], **fields}
    return json.dumps(rec) + "\n"


@pytest.mark.parametrize(
    "fields,field,path",
    [
        ({"image": "../secret.png"}, "image", "../secret.png"),
        ({"image": "images/../../../etc/passwd"}, "image", "images/../../../etc/passwd"),
        ({"video": "../../clip.mp4"}, "video", "../../clip.mp4"),
        ({"frames": ["a.jpg", "../../b.jpg"], "frames_root": "frames/x"}, "frames[1]", "../../b.jpg"),
        ({"frames": ["a.jpg"], "frames_root": "../outside"}, "frames_root", "../outside"),
    ],
)
def test_annotation_paths_cannot_escape_the_data_root(tmp_path, fields, field, path):
    ann = tmp_path / "data" / "train.jsonl"
    ann.parent.mkdir()
    ann.write_text(_line(**fields))
    pattern = re.escape(f"record 'r1': field `{field}` path '{path}' leaves the data root")
    with pytest.raises(PathEscapeError, match=pattern) as info:
        read_jsonl(str(ann))
    assert isinstance(info.value, ValueError)
    assert read_jsonl(str(ann), on_error="skip") == []  # an invalid line like any other


def test_paths_inside_the_root_and_absolute_paths_are_kept(tmp_path):
    ann = tmp_path / "data" / "train.jsonl"
    ann.parent.mkdir()
    ann.write_text(
        _line(image="images/./sub/../a.png") + _line(id="r2", image="/abs/b.png").replace('"id": "r1", ', "")
    )
    records = read_jsonl(str(ann))
    assert [r.image for r in records] == [str(tmp_path / "data" / "images" / "a.png"), "/abs/b.png"]
    assert (
        Record.from_dict({"id": "x", "image": "../a.png", "regions": []}).resolved(None).image == "../a.png"
    )  # no root: as given


def test_upstream_reader_refuses_an_escaping_relative_image(tmp_path):
    ann = tmp_path / "up.jsonl"
    ann.write_text(
        json.dumps(
            {
                "id": 3,
                "type": "image",
                "image": "../../x.jpg",
                "bbox": [1, 1, 2, 2],
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is the category of this region?"},
                    {"from": "gpt", "value": "cat"},
                ],
            }
        )
        + "\n"
    )
    with pytest.raises(PathEscapeError, match=r"field `image` path '../../x.jpg' leaves the data root"):
        read_upstream_jsonl(str(ann), root=tmp_path / "root")


# ---------------------------------------------------------------------------------- the network
def test_the_session_guard_refuses_non_loopback_and_allows_loopback():
    before = len(netguard.BLOCKED)
    with pytest.raises(netguard.NetworkBlocked, match=r"refused connect to 10\.255\.255\.1:80"):
        socket.create_connection(("10.255.255.1", 80), timeout=0.5)
    with pytest.raises(OSError, match="refused to resolve 'example.com'"):
        socket.getaddrinfo("example.com", 443)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6, pytest.raises(netguard.NetworkBlocked):
        s6.connect(("2001:db8::1", 80))
    assert netguard.BLOCKED[before:] == ["connect 10.255.255.1:80", "resolve example.com", "connect 2001:db8::1:80"]
    del netguard.BLOCKED[before:]
    # loopback works: a one-shot echo server on 127.0.0.1
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(16))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    with socket.create_connection(("localhost", port), timeout=5) as c:
        c.sendall(b"ping")
        assert c.recv(16) == b"ping"
    t.join(5)
    server.close()


def test_importing_every_pam_module_opens_no_connection():
    """In a fresh process, every module of pam/ is imported with socket connects and lookups recorded."""
    code = r"""
import importlib, pkgutil, socket, sys
attempts = []
real_connect, real_gai = socket.socket.connect, socket.getaddrinfo
socket.socket.connect = lambda self, a: (attempts.append(("connect", a)), real_connect(self, a))[1]
socket.getaddrinfo = lambda h, *a, **k: (attempts.append(("resolve", h)), real_gai(h, *a, **k))[1]
import pam
names = sorted(m.name for m in pkgutil.walk_packages(pam.__path__, "pam.") if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
print(len(names), attempts)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, attempts = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 50 and attempts == "[]", proc.stdout
