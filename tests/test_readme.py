"""What the README promises a newcomer: its two set-up commands (as `.ci/run` reads them), the
Space's files (packages.txt, LFS for large weights), the picture it opens with, and every
command-line and Python example's input file, shipped in examples/, each command parsed and the
file-taking ones run on tiny models."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
HF_MAX_BYTES = 10 * 1024 * 1024   # larger files reach a Hugging Face repository only through Git LFS


def readme_block(name: str) -> str:
    """The fenced command after <!-- ci:NAME -->, extracted by .ci/run's own function."""
    function = re.search(r"^readme_block\(\) \{.*?^\}", (REPO / ".ci" / "run").read_text(), re.S | re.M).group(0)
    out = subprocess.run(["bash", "-c", f"{function}\nreadme_block {name}"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return out.stdout


def code_blocks() -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M)


def cli_examples() -> list[str]:
    """Every `python -m core ...` line of the README's code blocks, comments dropped."""
    lines = [line.split("  #")[0].strip() for block in code_blocks() for line in block.splitlines()]
    return [line for line in lines if line.startswith("python -m core ") and "..." not in line]


def apt_packages(command: str) -> set[str]:
    found = set()
    for part in re.findall(r"apt-get install -y ([^&\\]+)", command):
        found |= set(part.split())
    return found


# ---- the two commands -----------------------------------------------------------------------------
def test_the_install_command_makes_a_venv_and_starts_the_app_without_a_browser():
    install = readme_block("install")
    assert "python3 -m venv .venv && . .venv/bin/activate" in install
    # the CPU build of torch is named beside it, as the small option (its index is not a package registry
    # that every machine reaches, so the tested command keeps to requirements.txt)
    readme = (REPO / "README.md").read_text()
    assert "pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "pip install -r requirements.txt" in install and install.rstrip().endswith("python app.py")
    assert "chromium" not in install and "playwright" not in install and "requirements-test" not in install
    space = set((REPO / "packages.txt").read_text().split())
    assert space <= apt_packages(install), "the install command installs what the Space installs"


def test_the_test_command_adds_the_browser_and_the_test_packages():
    test = readme_block("test")
    assert "chromium" in apt_packages(test)
    assert ". .venv/bin/activate" in test and "pip install -r requirements-test.txt" in test
    assert test.rstrip().endswith("python -m pytest -q tests")
    app_only = (REPO / "requirements.txt").read_text()
    assert "playwright" not in app_only and "pytest" not in app_only
    assert "-r requirements.txt" in (REPO / "requirements-test.txt").read_text()
    assert "playwright==" in (REPO / "requirements-test.txt").read_text()


def test_the_space_installs_every_data_package_the_code_reads():
    from core.data.emoji import CLDR_PACKAGE, EMOJI_TEST_PACKAGE, FONT_PACKAGE
    space = set((REPO / "packages.txt").read_text().split())
    assert {FONT_PACKAGE, EMOJI_TEST_PACKAGE, CLDR_PACKAGE} <= space
    assert "unicode-cldr-core" in space


def test_files_too_large_for_a_plain_hugging_face_push_are_marked_for_lfs():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    large = [p for p in tracked.decode().split("\0") if p and (REPO / p).is_file()
             and (REPO / p).stat().st_size > HF_MAX_BYTES]
    assert "checkpoints/class_base/model.safetensors" in large   # 15 MB: the case this guards
    attrs = subprocess.run(["git", "check-attr", "filter", "--", *large], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    assert all(line.endswith(": filter: lfs") for line in attrs.splitlines()), attrs
    weights = subprocess.run(["git", "check-attr", "filter", "--", "checkpoints/new/model.safetensors"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    assert weights.strip().endswith("lfs"), "any new checkpoint's weights go to LFS too"


# ---- the opening picture --------------------------------------------------------------------------
def test_the_readme_opens_with_plain_words_and_a_picture_of_real_outputs():
    body = README.split("\n---\n", 1)[1]   # after the Space's front matter, which must stay first
    assert README.startswith("---\ntitle: ")
    opening = body[:body.index("## ")]
    assert "![" in opening and "docs/readme_grid.png" in opening and "scripts/readme_grid.py" in opening
    assert "DiffAE" not in opening and "prior" not in opening   # the jargon comes later, explained
    grid = REPO / "docs" / "readme_grid.png"
    assert grid.stat().st_size < 600 * 1024
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.width >= 6 * 128


# ---- the examples' files --------------------------------------------------------------------------
FILE_OPTIONS = ("--image", "--mask")


def test_every_example_file_the_readme_names_is_shipped():
    named = set(re.findall(r"examples/[\w.-]+\.png", README))
    assert {"examples/in.png", "examples/cat.png", "examples/sketch.png", "examples/gray.png",
            "examples/mask.png", "examples/ref.png"} <= named
    for path in named:
        assert (REPO / path).is_file(), path
    with Image.open(REPO / "examples" / "cat.png") as im:
        assert im.size == (32, 32)   # upscale's 4x example starts from 32 px
    with Image.open(REPO / "examples" / "mask.png") as im:
        fill = np.asarray(im.convert("L")) > 127
        assert im.mode == "RGB" and 0 < fill.sum() < fill.size   # white = fill, some of it, not all


def test_every_command_line_example_parses_and_its_files_exist():
    from core.cli.main import build_parser
    examples = cli_examples()
    assert len(examples) >= 30
    for line in examples:
        argv = shlex.split(line)[3:]
        parser = build_parser(argv[0])
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the README's example does not parse: {line}")
        for option in FILE_OPTIONS:
            value = getattr(args, option.lstrip("-"), None)
            for path in [] if value is None else value if isinstance(value, list) else [value]:
                assert (REPO / path).is_file(), f"{line}: {path} is not shipped"
    files = [line for line in examples if any(o in shlex.split(line) for o in FILE_OPTIONS)]
    assert all("examples/" in line for line in files), files


def test_the_python_examples_name_shipped_files():
    python = "\n".join(b for b in code_blocks() if "import" in b)
    opened = re.findall(r"(?:open_image|Image\.open|handle_file)\(\"([^\"]+)\"\)", python)
    assert opened and all((REPO / p).is_file() for p in opened), opened


@pytest.mark.parametrize("example", [
    "upscale --image examples/cat.png --size 128",
    "translate --task inpaint --image examples/in.png --mask examples/mask.png",
    "translate --task colorize --image examples/gray.png",
    'translate --task sdedit --image examples/sketch.png --prompt "red apple" --strength 0.6',
])
def test_the_file_examples_run_on_tiny_models(example, tiny_checkpoints, tmp_path, monkeypatch):
    """The README's own line, with 2 steps on tiny random models: the shipped files are inputs the
    command takes (a mask it reads as a mask, a 32 px image upscaled 4x through both stages)."""
    from core.cli.main import main
    from core.images import read_parameters
    line = next(e for e in cli_examples() if e.startswith(f"python -m core {example}"))
    monkeypatch.chdir(REPO)
    out = tmp_path / "out.png"
    argv = [*shlex.split(line)[3:-2], "--out", str(out), "--steps", "2", "--checkpoints", str(tiny_checkpoints),
            "--device", "cpu"]
    assert main(argv) == 0
    with Image.open(out) as im:
        size = im.size
    params = read_parameters(out)
    if example.startswith("upscale"):
        assert size == (128, 128) and params["factor"] == 4
    else:
        assert size[0] in (32, 64, 128) and params is not None
