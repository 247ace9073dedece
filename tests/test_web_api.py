"""The web API answers from the core, concurrently: a slow plan holds up no estimate, a
plan over its time limit is a JSON 503, a sweep point costs one estimate, and every
answer equals the command line's JSON."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from loopback import serve_web
from vramplan import questions
from vramplan.cli import main
from vramplan.web import api


@pytest.fixture()
def base_url():
    with serve_web() as server:
        yield server.url


def get(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_slow_plan_does_not_hold_up_an_estimate(base_url, monkeypatch):
    # The plan blocks until released; the estimate must be answered while it is blocked.
    entered, release = threading.Event(), threading.Event()
    real_plan = questions.plan

    def slow_plan(values):
        entered.set()
        assert release.wait(60)
        return real_plan(values)

    monkeypatch.setattr(questions, "plan", slow_plan)
    plan_answer: list = []
    planner = threading.Thread(target=lambda: plan_answer.append(
        get(base_url + "/api/plan?model=llama-3.2-1b&gpu=rtx-4090&gpus=1")))
    planner.start()
    try:
        assert entered.wait(30)
        status, body = get(base_url + "/api/train?model=llama-3.2-1b&gpu=h100")
        assert status == 200 and body["verdict"]["fits"] is True
        assert not release.is_set() and planner.is_alive() and not plan_answer  # the plan is still running
    finally:
        release.set()
        planner.join(60)
    assert plan_answer[0][0] == 200 and plan_answer[0][1]["kind"] == "training"


def test_a_plan_over_its_time_limit_is_a_json_503(base_url, monkeypatch):
    release = threading.Event()

    def stuck_plan(values):
        release.wait(60)
        raise AssertionError("dropped: the request was answered already")

    monkeypatch.setattr(questions, "plan", stuck_plan)
    monkeypatch.setattr(api, "PLAN_TIME_LIMIT_S", 0.2)
    try:
        status, body = get(base_url + "/api/plan?model=llama-3.2-1b&gpu=rtx-4090")
    finally:
        release.set()
    assert status == 503
    assert body["ok"] is False and body["error"]["type"] == "TimeoutError"
    assert "longer than 0.2 s" in body["error"]["message"]


def test_concurrent_requests_get_their_own_answers(base_url, capsys):
    urls = {f"/api/train?model=llama-3.2-1b&batch={b}": ["train", "llama-3.2-1b", "--batch", str(b)]
            for b in (1, 2, 3, 4, 5, 6)}
    urls["/api/infer?model=llama-3.1-8b&engine=vllm&gpu=h100"] = ["infer", "llama-3.1-8b", "--engine", "vllm",
                                                                   "--gpu", "h100"]
    answers: dict[str, tuple[int, dict]] = {}
    threads = [threading.Thread(target=lambda u=u: answers.__setitem__(u, get(base_url + u))) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for url, argv in urls.items():
        assert main([*argv, "--json"]) == 0
        assert answers[url] == (200, json.loads(capsys.readouterr().out)), url


@pytest.mark.parametrize("query, argv", [
    ("model=llama-3.1-8b&gpu=h100&gpus=8&tp=2", ["llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--tp", "2"]),
    ("model=llama-3.1-70b&gpu=h100&infer=true&max-gpus=8", ["llama-3.1-70b", "--gpu", "h100", "--infer",
                                                             "--max-gpus", "8"]),
    ("model=qwen2.5-0.5b&gpu=l4&gpus=2&recompute=full&seq-len=2048",
     ["qwen2.5-0.5b", "--gpu", "l4", "--gpus", "2", "--recompute", "full", "--seq-len", "2048"]),
])
def test_plan_endpoint_is_the_plan_json(query, argv, capsys):
    status, body = api.handle("/api/plan", dict(p.split("=") for p in query.split("&")))
    assert status == 200
    assert main(["plan", *argv, "--json"]) == 0
    assert body == json.loads(capsys.readouterr().out)


def test_a_sweep_point_is_one_estimate(monkeypatch):
    import vramplan.training as training

    calls = []
    real = training._single_gpu_estimate
    monkeypatch.setattr(training, "_single_gpu_estimate", lambda *a: calls.append(a) or real(*a))
    values = "1,2,4,8,16,32,64"
    status, body = api.handle("/api/sweep", {"command": "train", "vary": "batch", "values": values,
                                             "model": "llama-3.1-8b", "gpu": "h100"})
    assert status == 200 and len(calls) == 7
    for point in body["points"]:
        direct = questions.train({"model": "llama-3.1-8b", "batch": int(point["value"])})
        assert point["total_bytes"] == direct.total_bytes and point["by_category"] == direct.by_category()


@pytest.mark.parametrize("query, text", [
    ({"model": "gpt2", "batch": "two"}, "Invalid value for '--batch': 'two' is not a valid integer"),
    ({"model": "gpt2", "engine": "tgi"}, "Invalid value for '--engine': 'tgi' is not one of"),
    ({"model": "gpt2", "fused-ce": "yes"}, "--fused-ce: a flag; expected true or false"),
])
def test_bad_values_are_400s_naming_the_flag(query, text):
    command = "infer" if "engine" in query else "train"
    status, body = api.handle(f"/api/{command}", query)
    assert status == 400 and text in body["error"]["message"]


def test_options_endpoint_lists_the_core_choices():
    from vramplan.training import METHODS

    status, body = api.handle("/api/options", {"question": "plan"})
    assert status == 200
    by_name = {o["name"]: o for o in body["options"]}
    assert tuple(by_name["method"]["choices"]) == METHODS
    assert by_name["seq"]["flag"] == "--seq" and by_name["gpu"]["required"] is True
