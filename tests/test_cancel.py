"""core.cancel: a job stopped from outside stops at its next network evaluation, and only that job."""
import threading

import pytest
import torch

from core import cancel
from core.pipeline import StageSettings, generate_class
from tests.tiny import tiny_model

SETTINGS = StageSettings(steps=20, guidance=3.0)


def count_steps(model, should_stop):
    """Steps the sampler reported before a stop check made it raise (None: it finished)."""
    steps = []
    with cancel.stop_when(should_stop):
        try:
            generate_class(model, ["cat-face"], [0], SETTINGS, callback=lambda info: steps.append(info["step"]))
        except cancel.Cancelled:
            return len(steps)
    return None


def test_sampling_stops_at_the_next_evaluation():
    model = tiny_model("class_base")
    asked = {"stop": False}

    def should_stop():
        return asked["stop"]

    steps = []

    def callback(info):
        steps.append(info["step"])
        if info["step"] == 4:
            asked["stop"] = True

    with cancel.stop_when(should_stop), pytest.raises(cancel.Cancelled):
        generate_class(model, ["cat-face"], [0], SETTINGS, callback=callback)
    assert steps == [0, 1, 2, 3, 4]


def test_no_stop_check_outside_a_job():
    model = tiny_model("class_base")
    assert count_steps(model, lambda: False) is None
    cancel.check()   # nothing set: a no-op
    x = generate_class(model, ["cat-face"], [0], SETTINGS)
    assert torch.isfinite(x).all()


def test_a_stop_belongs_to_its_own_thread():
    """One request's cancel never stops another's job (the check is context-local)."""
    model = tiny_model("class_base")
    result = {}
    started, stopped = threading.Event(), threading.Event()

    def other_job():
        started.wait()
        result["other"] = count_steps(model, lambda: False)   # runs while this thread is stopped
        stopped.set()

    t = threading.Thread(target=other_job)
    t.start()
    with cancel.stop_when(lambda: True):
        started.set()
        with pytest.raises(cancel.Cancelled):
            cancel.check()
        t.join(120)
    assert result["other"] is None   # it finished
