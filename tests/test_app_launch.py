"""Starting `python app.py`: a taken --port is refused before any model loads."""
from __future__ import annotations

import socket
import subprocess
import sys

from tests.test_app import REPO


def test_a_taken_port_is_refused_before_the_models_load(tiny_checkpoints):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--checkpoints",
                              str(tiny_checkpoints)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: port {port} on 127.0.0.1 cannot be used"), lines
    assert "models on" not in out.stdout   # nothing was loaded

