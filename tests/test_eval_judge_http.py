"""A judged benchmark scored through the shared chat client against a real HTTP server on
127.0.0.1: a 500 is retried, and a second scoring is served from the on-disk cache."""

from __future__ import annotations

import json

from pam.cli import main as pam_cli
from pam.eval import write_predictions

from .helpers.chat_server import ChatServer, Fault, last_user_text
from .test_eval_readers import write_dlc
from .test_eval_scoring import _dlc_answer


def test_dlc_bench_through_the_http_judge(tmp_path, capsys):
    data = write_dlc(tmp_path)
    pred = write_predictions(
        tmp_path / "run" / "predictions.jsonl",
        [{"id": "7", "prediction": "A red cup."}, {"id": "8", "prediction": "A white cat."}],
    )

    def reply(request, index):
        assert request["model"] == "judge-test" and request["temperature"] == 0.0 and request["max_tokens"] == 300
        return Fault(500) if index == 0 else _dlc_answer(last_user_text(request))

    argv = [
        "score",
        "dlc_bench",
        str(pred),
        "--data",
        str(data),
        "--judge-model",
        "judge-test",
        "--set",
        "judge.api_key_env=null",
        "--set",
        "judge.backoff_s=0.01",
        "--set",
        "judge.max_workers=1",
        "--out",
        str(tmp_path / "run"),
    ]
    with ChatServer(reply, max_requests=20, max_seconds=60) as server:
        capsys.readouterr()
        assert pam_cli([*argv, "--judge-url", server.base_url]) == 0
        first = json.loads(capsys.readouterr().out)
        assert server.count == 8  # the 500, then 7 questions (every question is asked, as the official script does)
        assert pam_cli([*argv, "--judge-url", server.base_url]) == 0
        assert json.loads(capsys.readouterr().out) == first
        assert server.count == 8  # every answer came from the cache
    pos, neg = 0.125, 0.0  # as in test_eval_scoring.test_dlc_bench_scoring_hand_computed
    assert abs(first["positive"] - 100 * pos) < 1e-9 and abs(first["average"] - 100 * (pos + neg) / 2) < 1e-9
    assert any((tmp_path / "run" / "judge_cache").rglob("*.json"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["judge"]["model"] == "judge-test" and results["scores"] == first


def test_a_judge_that_keeps_failing_is_reported_and_answers_already_scored_are_kept(tmp_path, capsys):
    """The judge answers 2 questions, then only 500s: scoring stops with an error naming the
    failure; the 2 answers stay in the cache, and a re-run against a healthy judge asks only the rest."""
    data = write_dlc(tmp_path)
    pred = write_predictions(
        tmp_path / "run" / "predictions.jsonl",
        [{"id": "7", "prediction": "A red cup."}, {"id": "8", "prediction": "A white cat."}],
    )
    argv = [
        "score",
        "dlc_bench",
        str(pred),
        "--data",
        str(data),
        "--judge-model",
        "judge-test",
        "--set",
        "judge.api_key_env=null",
        "--set",
        "judge.backoff_s=0.01",
        "--set",
        "judge.max_workers=1",
        "--set",
        "judge.max_tries=2",
        "--out",
        str(tmp_path / "run"),
    ]

    def failing(request, index):
        return _dlc_answer(last_user_text(request)) if index < 2 else Fault(500)

    with ChatServer(failing, max_requests=20, max_seconds=60) as server:
        capsys.readouterr()
        code = pam_cli([*argv, "--judge-url", server.base_url])
        message = capsys.readouterr().err
        assert code == 1 and "500" in message and message.count("\n") == 1 and "Traceback" not in message, message
        assert "gave up after 2 tries" in message
        assert server.count >= 2 + 2  # two answers, then failing questions tried max_tries times
    cached = list((tmp_path / "run" / "judge_cache").rglob("*.json"))
    assert len(cached) == 2
    with ChatServer(lambda r, i: _dlc_answer(last_user_text(r)), max_requests=20, max_seconds=60) as healthy:
        assert pam_cli([*argv, "--judge-url", healthy.base_url]) == 0
        assert healthy.count == 7 - 2  # only the questions not answered before
