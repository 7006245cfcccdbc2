"""Video decoding: decord and the PyAV fallback return the same frames; frame folders; failures."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from PIL import Image

from pam.data import video as video_mod
from pam.data.skips import BadSample
from pam.data.video import count_video_frames, read_frame_files, read_image, read_video, write_video_mp4

T, H, W = 12, 48, 64


def _frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        frames[t] = rng.integers(60, 200, 3)
        frames[t, 8:24, 4 + 3 * t : 20 + 3 * t] = (230, 30, 30)  # a moving red block
    return frames


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    write_video_mp4(path, _frames(), fps=8)
    return path


def test_decord_and_pyav_decode_identical_frames(mp4):
    pytest.importorskip("decord")
    indices = [0, 1, 5, 11]
    a = read_video(mp4, indices, backend="decord")
    b = read_video(mp4, indices, backend="pyav")
    assert a.shape == (4, H, W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # pixel-identical, not just close
    assert count_video_frames(mp4, "decord") == count_video_frames(mp4, "pyav") == T
    # and both are the frames that were written, up to H.264 loss
    assert np.abs(a.astype(int) - _frames()[indices].astype(int)).mean() < 4


def test_auto_falls_back_to_pyav_when_decord_is_missing(mp4, monkeypatch):
    reference = read_video(mp4, [2, 3, 7], backend="pyav")
    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("decord hidden by the test")
        return real_import(name, *args, **kwargs)

    calls = []
    real_pyav = video_mod._read_pyav
    monkeypatch.setattr(builtins, "__import__", no_decord)
    monkeypatch.setattr(video_mod, "_read_pyav", lambda *a: calls.append(a) or real_pyav(*a))
    out = read_video(mp4, [2, 3, 7])
    assert calls, "the PyAV path was not taken"
    np.testing.assert_array_equal(out, reference)
    assert count_video_frames(mp4) == T
    with pytest.raises(BadSample) as err:
        read_video(mp4, [0], backend="decord")
    assert err.value.reason == "corrupt_video"


def test_auto_falls_back_to_pyav_when_decord_fails(mp4, monkeypatch):
    def broken(path, indices):
        raise RuntimeError("decord could not seek")

    monkeypatch.setattr(video_mod, "_read_decord", broken)
    np.testing.assert_array_equal(read_video(mp4, [0, 4]), read_video(mp4, [0, 4], backend="pyav"))


def test_bad_video_files(tmp_path, mp4):
    with pytest.raises(BadSample) as err:
        read_video(str(tmp_path / "nope.mp4"), [0])
    assert err.value.reason == "missing_media"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 50)
    for backend in ("auto", "pyav"):
        with pytest.raises(BadSample) as err:
            read_video(str(junk), [0], backend=backend)
        assert err.value.reason == "corrupt_video"
    for backend in ("decord", "pyav"):
        with pytest.raises(BadSample, match="corrupt_video"):
            read_video(mp4, [0, T + 3], backend=backend)


def test_frame_folder_and_images(tmp_path):
    frames = _frames()
    paths = []
    for t, f in enumerate(frames):
        paths.append(str(tmp_path / f"{t:05d}.png"))
        Image.fromarray(f).save(paths[-1])
    np.testing.assert_array_equal(read_frame_files(paths, [0, 6, 11]), frames[[0, 6, 11]])
    Image.fromarray(frames[0][:20]).save(paths[6])
    with pytest.raises(BadSample, match="differ in size"):
        read_frame_files(paths, [0, 6])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BadSample) as err:
        read_image(str(tmp_path / "bad.png"))
    assert err.value.reason == "corrupt_image"
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((5, 7), 99, np.uint8)).save(gray)
    np.testing.assert_array_equal(read_image(str(gray)), np.full((5, 7, 3), 99, np.uint8))
