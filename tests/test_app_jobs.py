"""Long jobs of the app: bounded in size, and stopped (not left running beside the next job) when
their request is cancelled or their client goes away. The app runs in this process on tiny random
checkpoints, so the test can see its worker threads and count the network evaluations."""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from demos.common import JOB_THREAD
from tests.test_app import free_port, make_client

# A comparison that would run 6 samplers x 12 budgets x 200 NFE (14,400 evaluations of 8 samples)
LARGE = dict(model="text_base", prompt="thumbs up", label=None, sampler_names=["ddpm", "ddim", "euler", "heun",
             "euler-maruyama", "dpmpp-2m"], budgets=", ".join(["200"] * 12), seed=0, num_samples=8, guidance=3.0,
             thresholding=True)
LARGE_NFE = 6 * 12 * 200


@pytest.fixture(scope="module")
def app_url(tiny_checkpoints):
    import app
    demo = app.start(app.parse_args(["--checkpoints", str(tiny_checkpoints), "--host", "127.0.0.1",
                                     "--port", str(free_port()), "--device", "cpu", "--deepfloyd", "none"]))
    yield demo.local_url
    demo.close()


@pytest.fixture
def evaluations(monkeypatch):
    """Counts the network evaluations of every job (each asks core.cancel.check first)."""
    from core import cancel
    count = {"n": 0}
    check = cancel.check

    def counting_check():
        count["n"] += 1
        check()

    monkeypatch.setattr(cancel, "check", counting_check)
    return count


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == JOB_THREAD]


def wait_until(condition, what: str, limit_s: float = 60) -> None:
    """Poll `condition` until it holds; fail naming `what` after `limit_s` (a guard, not a measurement)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def assert_next_job_runs_alone(client) -> None:
    """A small comparison completes, and no other job thread runs beside it."""
    seen = []
    job = client.submit(**{**LARGE, "sampler_names": ["ddim"], "budgets": "2", "num_samples": 1},
                        api_name="/compare_samplers")

    def done() -> bool:
        seen.append(len(job_threads()))
        return job.done()

    wait_until(done, "the next job (it waits while the cancelled one still runs)")
    path, table, params = job.result()
    assert params["samplers"] == ["ddim"] and max(seen, default=0) <= 1


def test_cancelling_a_large_job_stops_its_work(app_url, tmp_path, evaluations):
    client = make_client(app_url, tmp_path)
    job = client.submit(**LARGE, api_name="/compare_samplers")
    wait_until(lambda: evaluations["n"] > 20, "the large job to start sampling")
    job.cancel()
    wait_until(lambda: not job_threads(), "the cancelled job's worker to stop")
    assert_next_job_runs_alone(client)
    assert evaluations["n"] < LARGE_NFE // 4, "the job ran on after it was cancelled"
    assert not job_threads()


def test_a_job_stops_when_its_client_goes_away(app_url, tmp_path, evaluations):
    """The HTTP API: start a job, read its first messages, then drop the connection."""
    base = app_url.rstrip("/") + "/gradio_api/call/compare_samplers"
    body = json.dumps({"data": list(LARGE.values())}).encode()
    request = urllib.request.Request(base, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        event_id = json.load(r)["event_id"]
    stream = urllib.request.urlopen(f"{base}/{event_id}", timeout=60)
    wait_until(lambda: evaluations["n"] > 20, "the job to start sampling")
    stream.readline()
    stream.close()  # the client goes away
    wait_until(lambda: not job_threads(), "the abandoned job's worker to stop")
    assert_next_job_runs_alone(make_client(app_url, tmp_path))
    assert evaluations["n"] < LARGE_NFE // 4, "the job ran on after its client went away"


@pytest.mark.parametrize("kwargs, message", [
    (dict(budgets=", ".join(["10"] * 13)), "at most 12 NFE budgets, got 13"),
    (dict(budgets="10," * 1000), "at most 12 NFE budgets, got 1000"),
    (dict(budgets="201"), "NFE budget must be an integer from 1 to 200"),
    (dict(sampler_names=["ddim"] * 50), "each sampler may be chosen once"),
])
def test_every_long_job_is_bounded(app_url, tmp_path, kwargs, message):
    from gradio_client.exceptions import AppError
    client = make_client(app_url, tmp_path)
    with pytest.raises(AppError, match=message):
        client.predict(**{**LARGE, **kwargs}, api_name="/compare_samplers")
    assert not job_threads()


def test_cancelling_a_queued_job_leaves_the_running_one_of_the_same_client(app_url, tmp_path):
    """One client submits A (running) then B (queued behind it) to one endpoint and cancels B:
    A still finishes with its result (Gradio's own /cancel stops every job of the client's session
    on that endpoint)."""
    client = make_client(app_url, tmp_path)
    a = client.submit(**{**LARGE, "sampler_names": ["ddim", "euler"], "budgets": "20, 40", "num_samples": 2},
                      api_name="/compare_samplers")
    wait_until(lambda: job_threads(), "job A to start")
    b = client.submit(**LARGE, api_name="/compare_samplers")
    time.sleep(0.5)
    b.cancel()
    path, table, params = a.result(timeout=300)
    assert params["samplers"] == ["ddim", "euler"]
    wait_until(lambda: not job_threads(), "no job left running (B never ran)")


def test_a_request_stops_at_its_time_budget(app_url, tmp_path, monkeypatch):
    """A job past the time one request may use (app.py --request-budget) stops with an error that
    says so, and no job is left running."""
    from gradio_client.exceptions import AppError

    from demos import jobs
    monkeypatch.setattr(jobs, "REQUEST_BUDGET_S", 1.0)
    client = make_client(app_url, tmp_path)
    start = time.monotonic()
    with pytest.raises(AppError) as raised:
        client.predict(**LARGE, api_name="/compare_samplers")
    assert raised.value.message.startswith("Too long: the run took longer than the 1 s one request may use")
    assert time.monotonic() - start < 60
    wait_until(lambda: not job_threads(), "the job to stop")
