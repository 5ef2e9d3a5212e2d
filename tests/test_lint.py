"""The code passes ruff with the rules in pyproject.toml, so CI (which runs pytest) checks lint."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    pytest.importorskip("ruff", reason="ruff is a dev dependency (uv sync installs it)")
    targets = ["sdaie", "tests", "scripts", *sorted(p.name for p in REPO.glob("*.py"))]
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *targets],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
