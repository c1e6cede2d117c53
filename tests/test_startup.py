"""A command imports what it uses and no more: what a real `python -m core ...` process has in
sys.modules after it ran (the modules that cost seconds to import are named, not timed)."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
# Run the command line in-process, then print the top-level names of the imported modules
# (and torch._dynamo, which torch imports only on demand).
PROBE = """
import json, runpy, sys
sys.argv = ["python -m core", *json.loads(sys.argv[1])]
try:
    runpy.run_module("core", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
else:
    code = 0
names = {m.split(".")[0] for m in sys.modules} | {m for m in sys.modules if m.startswith(("core.", "torch._dynamo"))}
print(json.dumps({"code": code, "modules": sorted(names)}))
"""
HEAVY = ("gradio", "transformers", "diffusers", "open_clip", "torchvision", "timm", "scipy", "torch._dynamo",
         "core.deepfloyd", "core.evaluation.evaluate", "core.translate", "core.training",
         "core.training.loop", "core.evaluation", "core.cli.train", "core.models.clip_model",
         "ftfy", "regex")   # the BPE tokenizer needs ftfy and regex only for text beyond plain ASCII
# core.diffae is not here: it holds inference only, and the semantic base decodes through it (~30 ms)


def imported(*args) -> tuple[int, set[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps([str(a) for a in args])], capture_output=True,
                          text=True, timeout=600, env=ENV, cwd=REPO)
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    return result["code"], set(result["modules"])


def test_generate_imports_no_ui_no_diffusers_no_other_commands(tmp_path, tiny_checkpoints):
    code, modules = imported("generate", "--prompt", "red apple", "--steps", 2, "--sr-steps", 2, "--size", 128,
                             "--checkpoints", tiny_checkpoints, "--out", tmp_path / "o")
    assert code == 0 and (tmp_path / "o" / "000.png").is_file()
    assert "torch" in modules and "core.models.unet" in modules and "core.models.clip_text" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_generate_label_imports_no_text_encoder(tmp_path, tiny_checkpoints):
    code, modules = imported("generate", "--label", "cat-face", "--steps", 2, "--size", 32,
                             "--checkpoints", tiny_checkpoints, "--out", tmp_path / "o")
    assert code == 0 and not modules & set(HEAVY)


@pytest.mark.parametrize("args", [["classes"], ["attributes"], ["--help"], ["classes", "--help"], []])
def test_listing_commands_and_help_import_no_torch(tiny_checkpoints, args):
    extra = ["--checkpoints", str(tiny_checkpoints)] if args and args[0] in ("classes", "attributes") \
        and "--help" not in args else []
    code, modules = imported(*args, *extra)
    assert code == (2 if not args else 0)    # no command: argparse's usage error
    assert "torch" not in modules and "numpy" not in modules, sorted(m for m in modules if "torch" in m)


def test_classes_and_attributes_print_the_names_of_the_configs(tiny_checkpoints):
    from tests.tiny import CLASSES
    run = [sys.executable, "-m", "core"]
    out = subprocess.run([*run, "classes", "--checkpoints", str(tiny_checkpoints)], capture_output=True,
                         text=True, timeout=120, env=ENV, check=True).stdout
    assert out.split("\n")[:-1] == CLASSES
    out = subprocess.run([*run, "attributes", "--checkpoints", str(tiny_checkpoints)], capture_output=True,
                         text=True, timeout=120, env=ENV, check=True).stdout
    assert out.split() == ["dark-skin", "woman", "smiling"]


def test_command_help_table_matches_the_full_parser():
    """`--help` lists the commands from COMMANDS; every command the modules add must be there, with
    the same help."""
    from core.cli.main import COMMANDS, build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {name: text for name, (_, text) in COMMANDS.items()}


def test_a_builtin_command_builds_no_other_commands():
    from core.cli.main import build_parser
    sub = next(a for a in build_parser("generate")._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"generate", "variations", "classes", "attributes", "upscale"}


def test_set_cpu_threads_keeps_an_explicit_count(monkeypatch):
    import torch

    from core.models.modelset import free_cores, set_cpu_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert set_cpu_threads() == 1
        assert set_cpu_threads(2) == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_cpu_threads() == free_cores()
        monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 0.0, 0.0))   # every core busy: one thread
        assert free_cores() == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))    # idle: every core
        assert free_cores() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
