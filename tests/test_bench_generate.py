"""scripts/bench_generate.py runs on the tiny checkpoints and reports every figure it promises
(no assertion on the times themselves: they depend on the machine)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_generate.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_bench_reports_every_field_for_both_bases_and_another_checkout(tiny_checkpoints, tmp_path):
    from core.pipeline import BASE_DEFAULTS, SR_STAGE_DEFAULTS
    from core.semantic import DECODER_STEPS, PRIOR_DEFAULTS
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--checkpoints", str(tiny_checkpoints), "--runs", "1",
                           "--reps", "1", "--before", str(REPO), "--json", str(out)],
                          capture_output=True, text=True, timeout=900, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for label in ("whole process, median (s)", "imports in that process (s)", "of which torch (s)",
                  "model load, in-process (s)", "text base 32 px: s (network s) / NFE", "prior (z_sem)",
                  "DiffAE decoder 32 px", "SR 64 px", "SR 128 px", "per image in-process after warm-up (s)",
                  "python -m core classes (s)", "python -m core --help (s)", "ratio ours / diffusers"):
        assert label in text, label
    results = json.loads(out.read_text())
    assert list(results["columns"]) == ["pixel", "semantic", "before (pixel)"]
    pixel, semantic, before = (results["columns"][c] for c in results["columns"])
    for col in (pixel, semantic, before):
        assert len(col["whole_process_runs"]) == 1 and col["whole_process"] > 0
        assert 0 < col["imports"]["torch"] <= col["imports"]["total"] < col["whole_process"]
        assert set(col["listing"]) == {"classes", "help"}
    # the NFE of each stage are the steps of the defaults: one network call per step
    sr64, sr128 = SR_STAGE_DEFAULTS[0].steps, SR_STAGE_DEFAULTS[1].steps
    # the pixel base encodes three texts: the prompt to read it (core.reading, "nearest"), then the
    # prompt and the empty negative prompt it is guided between
    assert {k: v["nfe"] for k, v in pixel["stages"].items()} == {
        "text encoder": 3, "text_base": BASE_DEFAULTS.steps, "sr64": sr64, "sr128": sr128}
    # the semantic base encodes the prompt twice: to read it (core.reading, "nearest") and for the prior
    assert {k: v["nfe"] for k, v in semantic["stages"].items()} == {
        "text encoder": 2, "prior": PRIOR_DEFAULTS.steps, "diffae": DECODER_STEPS, "sr64": sr64, "sr128": sr128}
    for col in (pixel, semantic):
        stages = col["stages"].values()
        assert all(0 < s["network"] <= s["seconds"] for s in stages)
        # one run: the stages split that run's time, from the call to its return
        assert sum(s["seconds"] for s in stages) == pytest.approx(col["per_image"], rel=1e-6)
    d = results["diffusers"]
    assert d["nfe_ours"] == d["nfe_diffusers"] == BASE_DEFAULTS.steps
    assert d["max_abs_difference"] < 0.02   # the same sampler: the two loops draw the same image


def test_bench_names_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--bases", "pixel,nope"], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.returncode == 2 and "--bases takes pixel, semantic; got 'pixel,nope'" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--before", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.returncode == 2 and "no core/__main__.py there" in proc.stderr
