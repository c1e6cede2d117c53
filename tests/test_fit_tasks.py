"""The judge and the attribute classifiers train through the shared loop (`core.optim.fit`) as
registered training tasks: their weights are those the recipe gave before it moved there, a
resumed run ends where an uninterrupted one does, and evaluation only loads them."""
import hashlib

import pytest
import torch

from core.cli.main import main
from core.data.emoji import load_dataset
from core.evaluation.classifiers import ClassifierMissing, ClassifierSettings, load_classifier
from core.evaluation.judge import Judge
from core.training.classifiers import train_classifier
from core.training.judge import JudgeSettings, train_judge
from core.training.registry import fit_settings
from core.training.task import Budget

# sha256 of the weights of these tiny seeded runs, recorded with the code as it was before the
# training moved to the shared loop (one thread, this repository's CPU test machine)
JUDGE_TINY = JudgeSettings(steps=6, batch=4, width=4, max_train=16, poor=0, warmup=2, seed=3)
CLASSIFIER_TINY = ClassifierSettings(steps=6, batch=8, width=4, max_train=24, warmup=2, seed=3)
JUDGE_FINGERPRINT, CLASSIFIER_FINGERPRINT = "871dd6bd757b90af", "c9c36b2862b32621"


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def data():
    return load_dataset()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_judge_weights_are_those_of_the_recipe_before_the_shared_loop(data, one_thread):
    judge = train_judge(data, JUDGE_TINY, log=None)
    assert fingerprint(judge.model.state_dict()) == JUDGE_FINGERPRINT


def test_classifier_weights_are_those_of_the_recipe_before_the_shared_loop(data, one_thread):
    clf = train_classifier("skin_tone", data, CLASSIFIER_TINY, log=None)
    assert fingerprint(clf.model.state_dict()) == CLASSIFIER_FINGERPRINT


class StopAt(Budget):
    """A budget that ends the loop before step `at` (a time budget, made exact for tests)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def __call__(self, step: int) -> bool:
        self.stopped = self.stopped or step >= self.at
        return self.stopped


def test_a_resumed_judge_equals_an_uninterrupted_one(data, tmp_path):
    whole = train_judge(data, JUDGE_TINY, log=None)
    assert train_judge(data, JUDGE_TINY, log=None, state_path=tmp_path / "state.pt", budget=StopAt(4),
                       save_every=1) is None
    resumed = train_judge(data, JUDGE_TINY, log=None, state_path=tmp_path / "state.pt")
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (resumed.threshold, resumed.manifold) == (whole.threshold, whole.manifold)


def test_a_resumed_classifier_equals_an_uninterrupted_one(data, tmp_path):
    whole = train_classifier("gender", data, CLASSIFIER_TINY, log=None)
    assert train_classifier("gender", data, CLASSIFIER_TINY, log=None, state_path=tmp_path / "s.pt",
                            budget=StopAt(3)) is None
    assert torch.load(tmp_path / "s.pt", weights_only=True)["step"] == 3
    resumed = train_classifier("gender", data, CLASSIFIER_TINY, log=None, state_path=tmp_path / "s.pt")
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_train_classifiers_writes_what_evaluation_loads_and_a_missing_one_names_the_command(data, tmp_path, capsys):
    settings = fit_settings("classifiers", smoke=True)
    with pytest.raises(ClassifierMissing, match="python -m core train classifiers --tasks gender --steps 4"):
        load_classifier("gender", tmp_path / "clf", data, settings)
    with pytest.raises(ClassifierMissing, match="train it with `python -m core train classifiers --tasks skin_tone`"):
        load_classifier("skin_tone", tmp_path / "none", data)
    assert main(["train", "classifiers", "--smoke", "--tasks", "gender", "--export", str(tmp_path / "clf"),
                 "--run", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| gender | 3 |" in out
    clf = load_classifier("gender", tmp_path / "clf", data, settings)
    assert clf.classes == ["man", "woman", "person"] and clf.info["settings"]["steps"] == 4
    assert not list((tmp_path / "run").glob("*.pt"))    # written: its run state is done with
    # the same command again loads it instead of training; --force trains again
    assert main(["train", "classifiers", "--smoke", "--tasks", "gender", "--export", str(tmp_path / "clf")]) == 0
    assert "training a classifier" not in capsys.readouterr().out


@pytest.mark.slow
def test_train_judge_writes_a_judge_that_loads(data, tmp_path):
    assert main(["train", "judge", "--smoke", "--export", str(tmp_path / "a"), "--run", str(tmp_path / "run"),
                 "--threads", "1"]) == 0
    judge = Judge.load(tmp_path / "a")
    assert judge.info["settings"]["steps"] == 4 and judge.info["settings"]["poor"] == 0
    assert "all" in judge.info["measured"] and (tmp_path / "a" / "README.md").is_file()
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 4


def test_the_old_judge_train_command_is_the_registered_task(monkeypatch, tmp_path):
    calls = []

    def record(kind, settings, run=None, export=None, budget_minutes=None, log=None, **options):
        calls.append((kind, settings, run, str(export), options))

    monkeypatch.setattr("core.cli.train.train_fit", record)
    monkeypatch.setattr("core.cli.judge.train_fit", record)
    common = ["--steps", "7", "--poor", "0", "--seed", "2", "--twin", "--checkpoints", str(tmp_path)]
    assert main(["train", "judge", *common, "--export", "out", "--run", "r"]) == 0
    assert main(["judge", "train", *common, "--out", "out", "--run", "r"]) == 0
    assert calls[0] == calls[1]
    kind, settings, _, _, options = calls[0]
    assert kind == "judge" and settings == JudgeSettings(steps=7, poor=0, seed=2)
    assert options == {"twin": True, "checkpoints": str(tmp_path)}


@pytest.mark.parametrize("argv,message", [
    (["train", "judge", "--crop", "8"], "--crop does not apply to judge"),
    (["train", "classifiers", "--twin"], "--twin does not apply to classifiers"),
    (["train", "sr64", "--twin"], "--twin applies to judge only, not sr64"),
    (["train", "prior", "--tasks", "gender"], "--tasks applies to classifiers only, not prior"),
    (["train", "classifiers", "--tasks", "nose"], "unknown classifier 'nose'"),
])
def test_options_a_task_does_not_read_are_refused(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_run_folder_of_other_settings_is_refused(data, tmp_path, capsys):
    run = ["--run", str(tmp_path / "run"), "--export", str(tmp_path / "clf"), "--tasks", "gender", "--smoke"]
    assert train_classifier("gender", data, fit_settings("classifiers", smoke=True), log=None,
                            state_path=tmp_path / "run" / "gender-x.pt", budget=StopAt(2)) is None
    (tmp_path / "run" / "config.json").write_text('{"steps": 99}\n')
    assert main(["train", "classifiers", *run]) == 2
    assert "holds a run with other settings" in capsys.readouterr().err


def test_colour_code_predictor_weights_are_those_before_the_shared_loop(one_thread):
    """`CodePredictor.fit` (colorization) also steps through `core.optim.fit` now (constant rate)."""
    from core.translate import CodePredictor
    g = torch.Generator().manual_seed(0)
    grey, colour, thumbs = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g), torch.randn(
        300, 12, generator=g)
    p = CodePredictor.fit(grey, colour, thumbs, hidden=32, epochs=3, batch=64)
    h = hashlib.sha256()
    for k in ("mean", "std", "w1", "b1", "w2", "b2"):
        h.update(getattr(p, k).contiguous().numpy().tobytes())
    assert h.hexdigest()[:16] == "623bcce805cea4ac"
