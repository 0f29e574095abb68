"""Static checks of csta_lib, configured in pyproject.toml: the linter (ruff, its chosen rule set) and the type
checker (mypy). Both run here, so `make test` and CI run them; a failure lists what they found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m <tool> ...`` in the project folder (the configuration is read from pyproject.toml)."""
    try:
        return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args[0]} did not finish within {timeout:.0f} s")


def test_ruff_finds_nothing_in_csta_lib() -> None:
    done = run_tool("ruff", "check", "--no-cache", "--output-format", "concise", "csta_lib")
    assert "No module named ruff" not in done.stderr, "ruff is not installed: pip install '.[dev]'"
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_in_csta_lib() -> None:
    # its incremental cache in the git-ignored .cache/ (a cold run takes about a minute on a 2-core machine)
    done = run_tool("mypy", "--cache-dir", str(PROJECT_ROOT / ".cache" / "mypy"))
    assert "No module named mypy" not in done.stderr, "mypy is not installed: pip install '.[dev]'"
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checks_are_configured_and_bite(tmp_path: Path) -> None:
    """The configuration is the one in pyproject.toml, and each tool reports a real finding."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x: int) -> str:\n    return x\n")
    lint = run_tool("ruff", "check", "--no-cache", "--config", str(PROJECT_ROOT / "pyproject.toml"), str(bad))
    assert lint.returncode == 1 and "F401" in lint.stdout, lint.stdout + lint.stderr
    types = run_tool("mypy", "--config-file", str(PROJECT_ROOT / "pyproject.toml"), "--cache-dir",
                     str(tmp_path / "cache"), str(bad))
    assert types.returncode == 1 and "Incompatible return value type" in types.stdout, types.stdout + types.stderr
