"""The command line, `python -m core ...`, run as a user runs it (a subprocess)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core.images import read_parameters

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def cli(*args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "core", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_generate_writes_numbered_pngs_with_parameters(tmp_path, tiny_checkpoints):
    out = tmp_path / "out"
    cli("generate", "--prompt", "woman dancing, dark skin tone", "--negative-prompt", "man", "--num", 2,
        "--steps", 2, "--sr-steps", 2, "--sampler", "dpmpp-2m", "--seed", 5, "--checkpoints", tiny_checkpoints,
        "--out", out)
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png"]
    image = Image.open(out / "001.png")
    assert image.size == (128, 128) and image.mode == "RGB"
    params = read_parameters(image)
    assert params["prompt"] == "woman dancing, dark skin tone" and params["seed"] == 6
    assert params["base"]["sampler"] == "dpmpp-2m"


def test_generate_label_and_size(tmp_path, tiny_checkpoints, capsys):
    from core.cli.main import main
    assert main(["classes", "--checkpoints", str(tiny_checkpoints)]) == 0
    label = capsys.readouterr().out.split()[0]
    assert main(["generate", "--label", label, "--size", "32", "--steps", "2", "--checkpoints",
                 str(tiny_checkpoints), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "000.png").size == (32, 32)


def test_upscale_any_input_mode(tmp_path, tiny_checkpoints):
    src = tmp_path / "in.png"
    Image.new("P", (40, 30), 3).save(src)
    from core.cli.main import main
    common = ["--steps", "2", "--checkpoints", str(tiny_checkpoints)]
    assert main(["upscale", "--image", str(src), "--size", "64", "--out", str(tmp_path / "up.png"), *common]) == 0
    assert Image.open(tmp_path / "up.png").size == (64, 64)
    assert main(["upscale", "--image", str(src), "--size", "128", "--factor", "4", "--out",
                 str(tmp_path / "up4.png"), *common]) == 0
    assert Image.open(tmp_path / "up4.png").size == (128, 128)


@pytest.mark.parametrize("args,message", [
    (["generate", "--prompt", "", "--out", "o"], "prompt is empty"),
    (["generate", "--label", "nope", "--out", "o"], "unknown class"),
    (["generate", "--prompt", "x", "--steps", "0", "--out", "o"], "steps"),
    (["generate", "--prompt", "x", "--steps", "5000", "--out", "o"], "steps"),
    (["generate", "--prompt", "x", "--threshold-max", "0.5", "--out", "o"], "threshold_max"),
    (["upscale", "--image", "missing.png", "--size", "64", "--out", "u.png"], "does not exist"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, tiny_checkpoints, monkeypatch, capsys, args, message):
    from core.cli.main import main
    monkeypatch.chdir(tmp_path)
    try:
        code = main([*args, "--checkpoints", str(tiny_checkpoints)])
    except SystemExit as e:   # an option out of its range is refused by the parser (core.capabilities)
        code = e.code
    assert code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "o").exists() and not (tmp_path / "u.png").exists()


def test_bad_input_exit_status_from_a_real_process(tmp_path, tiny_checkpoints):
    proc = subprocess.run([sys.executable, "-m", "core", "generate", "--prompt", "x", "--sampler", "ddim",
                           "--guidance", "nan", "--out", str(tmp_path / "o"), "--checkpoints", str(tiny_checkpoints)],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode != 0 and "guidance" in proc.stderr and not (tmp_path / "o").exists()


def test_corrupt_image_and_missing_checkpoints(tmp_path, tiny_checkpoints):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    from core.cli.main import main
    assert main(["upscale", "--image", str(bad), "--size", "64", "--checkpoints", str(tiny_checkpoints),
                 "--out", str(tmp_path / "u.png")]) == 2
    assert not (tmp_path / "u.png").exists()
    assert main(["classes", "--checkpoints", str(tmp_path / "nowhere" / "x" / "y")]) == 2


# ---- the output path is checked before any work --------------------------------------------------
BAD_OUT = {   # command, where --out points (under tmp_path unless absolute), what the error says
    "generate into a file": ("generate", "a-file.png", "is not a folder"),
    "generate under /proc": ("generate", "/proc/nope/x", "cannot be written"),
    "generate under a file": ("generate", "a-file.png/x", "is a file, not a folder"),
    "upscale into a folder": ("upscale", "existing-folder", "is a folder"),
    "translate into a folder": ("translate", "existing-folder", "is a folder"),
    "reconstruct into a folder": ("reconstruct", "existing-folder", "is a folder"),
    "edit into a folder": ("edit", "existing-folder", "is a folder"),
    "edit under /proc": ("edit", "/proc/nope/e.png", "cannot be written"),
}
COMMAND_ARGS = {"generate": ["--prompt", "x"], "upscale": ["--image", "IMAGE", "--size", "64"],
                "translate": ["--task", "sdedit", "--image", "IMAGE"], "reconstruct": ["--image", "IMAGE"],
                "edit": ["--image", "IMAGE", "--attribute", "woman", "--strength", "1"]}


@pytest.mark.parametrize("case", list(BAD_OUT))
def test_bad_out_is_refused_before_any_work(tmp_path, capsys, case):
    """--checkpoints names a folder that does not exist: a command that did any work before
    checking --out would fail on the checkpoints instead."""
    from core.cli.main import main
    (tmp_path / "existing-folder").mkdir()
    (tmp_path / "a-file.png").write_bytes(b"not touched")
    Image.new("RGB", (40, 40), (200, 40, 40)).save(tmp_path / "in.png")
    command, out, message = BAD_OUT[case]
    args = [str(tmp_path / "in.png") if a == "IMAGE" else a for a in COMMAND_ARGS[command]]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([command, *args, "--out", str(tmp_path / out), "--checkpoints", str(tmp_path / "none")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and message in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "a-file.png").read_bytes() == b"not touched"


def test_bad_out_from_a_real_process(tmp_path):
    proc = cli("reconstruct", "--image", "whatever.png", "--out", tmp_path, "--checkpoints", tmp_path / "none",
               ok=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --out {tmp_path} is a folder; give a PNG file name"]


def test_mechanics_checks_out_before_any_work(tmp_path, capsys):
    from core.cli.main import main
    assert main(["mechanics", "trajectory", "--prompt", "x", "--out", str(tmp_path),
                 "--checkpoints", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {tmp_path} is a folder; give a PNG file name"


def test_a_huge_prompt_is_cut_to_the_context_and_stored_cut(tmp_path, tiny_checkpoints, capsys):
    from core.cli.main import main
    prompt = "thumbs up, " * 100_000      # 1.1 MB
    assert main(["generate", "--prompt", prompt, "--size", "32", "--steps", "2", "--checkpoints",
                 str(tiny_checkpoints), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "note: the prompt was cut to the 32 tokens the text encoder reads" in out   # tests/tiny.py's CLIP
    png = tmp_path / "o" / "000.png"
    stored = read_parameters(png)["prompt"]
    assert prompt.startswith(stored) and 0 < len(stored) < 200
    assert png.stat().st_size < 20_000


# ---- bad invocations: exit status 2 and one line -------------------------------------------------
def bomb_png(path: Path, side: int) -> Path:
    """A valid grey PNG of side x side pixels, all white, a few hundred KB on disk (a
    decompression bomb: its pixels take side**2 bytes once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" + b"\xff" * side
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("args, message", [
    (["generate", "--prompt", "x", "--seed", "-1", "--out", "o"], "-1 is not from 0 to 4294967295"),
    (["generate", "--prompt", "x", "--seed", str(2**70), "--out", "o"], "is not from 0 to 4294967295"),
    (["generate", "--prompt", "x", "--size", "256", "--out", "o"], "invalid choice: 256"),
    (["generate", "--prompt", "x", "--guidance", "nan", "--out", "o"], "nan is not a finite number"),
    (["translate", "--task", "sdedit", "--image", "x.png", "--seed", "1.5", "--out", "o.png"], "not a whole number"),
])
def test_argument_errors_are_one_line(args, message):
    proc = cli(*args, ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and proc.stderr.startswith("error: "), proc.stderr


def test_images_too_large_or_folders_are_refused_in_one_line(tmp_path, tiny_checkpoints):
    """A 20000x20000 PNG (decompression bomb) and a 9000x9000 one are refused from their headers,
    before any pixel is decoded; a folder is named as a folder."""
    for side in (20000, 9000):
        bomb = bomb_png(tmp_path / f"bomb{side}.png", side)
        assert bomb.stat().st_size < 1_000_000
        proc = cli("upscale", "--image", bomb, "--size", "64", "--checkpoints", tiny_checkpoints,
                   "--out", tmp_path / "up.png", ok=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "each side must be between" in proc.stderr and not (tmp_path / "up.png").exists()
    proc = cli("upscale", "--image", tmp_path, "--size", "64", "--checkpoints", tiny_checkpoints,
               "--out", tmp_path / "up.png", ok=False)
    assert proc.returncode == 2 and "is a folder, not an image file" in proc.stderr


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    from core.cli import main as cli_main

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_main, "check_out", interrupted)
    assert cli_main.main(["generate", "--prompt", "x", "--out", "o"]) == 130
    assert capsys.readouterr().err == "stopped\n"


def test_upscale_takes_the_factor_from_its_input_and_pngs_are_readable_by_others(tmp_path, tiny_checkpoints):
    """A 32 px input asked at 128 gets both SR stages (factor 4); a 64 px one the 128 stage alone; the
    PNG has the mode of an ordinary new file (0644 under umask 022)."""
    import stat

    from core.cascade import upscale_factor
    assert upscale_factor(128, 32, None) == 4 and upscale_factor(128, 64, None) == 2
    assert upscale_factor(64, 32, None) == 2 and upscale_factor(128, 20, 2) == 2
    with pytest.raises(ValueError, match="needs size 128"):
        upscale_factor(64, 32, 4)
    src = tmp_path / "in32.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(src)
    old = os.umask(0o022)
    try:
        cli("upscale", "--image", src, "--size", 128, "--steps", 2, "--checkpoints", tiny_checkpoints,
            "--out", tmp_path / "up.png")
    finally:
        os.umask(old)
    params = read_parameters(Image.open(tmp_path / "up.png"))
    assert params["factor"] == 4
    assert stat.S_IMODE((tmp_path / "up.png").stat().st_mode) == 0o644


def test_upscale_runs_each_sr_stage_with_its_own_config(tmp_path, tiny_checkpoints):
    """sr64 and sr128 each sample with the settings their own config names (here made different);
    a 32 px input asked at 128 goes through both (32 -> 64 -> 128); --steps / --noise replace those
    of every stage. The command draws what `core.cascade.super_resolve` draws with those settings."""
    import json
    import shutil

    import torch

    from core.cascade import super_resolve, upscale_settings
    from core.images import open_image, pil_to_tensor
    from core.models.modelset import ModelSet
    root = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints, root)
    for name, sampling in (("sr64", {"sampler": "ddim", "steps": 3, "aug_level": 20}),
                           ("sr128", {"sampler": "euler", "steps": 2, "aug_level": 70})):
        path = root / name / "config.json"
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, "sampling": {**config.get("sampling", {}), **sampling}}))
    src = tmp_path / "in32.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(src)
    cli("upscale", "--image", src, "--size", 128, "--checkpoints", root, "--out", tmp_path / "own.png")
    params = read_parameters(Image.open(tmp_path / "own.png"))
    assert (params["factor"], params["steps"], params["noise"], params["sampler"]) == (4, [3, 2], [20, 70],
                                                                                         ["ddim", "euler"])
    models = ModelSet(root, "cpu")
    settings = upscale_settings(models, 4, 128)
    assert [(s.steps, s.aug_level) for s in settings] == [(3, 20), (2, 70)]
    want = super_resolve(models, pil_to_tensor(open_image(src), size=32), 4, [0], settings)
    got = pil_to_tensor(open_image(tmp_path / "own.png"))
    assert got.shape[-1] == 128 and (got - want.cpu().clamp(-1, 1)).abs().max() <= 2 / 255 + 1e-6
    cli("upscale", "--image", src, "--size", 128, "--steps", 1, "--noise", 0, "--checkpoints", root,
        "--out", tmp_path / "set.png")
    params = read_parameters(Image.open(tmp_path / "set.png"))
    assert (params["steps"], params["noise"], params["sampler"]) == ([1, 1], [0, 0], ["ddim", "euler"])
    with pytest.raises(ValueError, match="got 1 SR settings for the 2 stages"):
        super_resolve(models, torch.zeros(1, 3, 32, 32), 4, [0], settings[:1])
