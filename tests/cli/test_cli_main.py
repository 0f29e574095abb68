"""The ``csta`` entry point: help and argument errors answer without importing torch, every help text names only
commands that exist, and a command whose optional extra is missing says which extra to install."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from csta_lib.cli import build_parser, missing_extra
from support import write_splits, write_tiny_eccv16

ROOT = Path(__file__).resolve().parents[2]
CORE_ONLY = [sys.executable, str(ROOT / "tests" / "core_only.py")]


def command_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                               argparse.ArgumentParser]]:
    """``(command path, its parser)`` for the top level and every command and sub-command."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_parsers(sub, (*path, name))


COMMANDS = [path for path, _ in command_parsers(build_parser())]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names in the output of ``python -X importtime``."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", importtime_stderr, re.M)}


def torch_imports(importtime_stderr: str) -> list[str]:
    return sorted(m for m in imported_modules(importtime_stderr) if m == "torch" or m.startswith("torch."))


def test_every_command_is_listed():
    assert {p for p in COMMANDS if len(p) == 1} == {(c,) for c in ("data", "model", "evaluate", "train", "results",
                                                                  "grid", "summarize")}
    assert ("model", "list") in COMMANDS and ("data", "check") in COMMANDS and ("results", "table") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "csta")
def test_help_imports_no_torch(path):
    result = run([sys.executable, "-X", "importtime", "-m", "csta_lib.cli", *path, "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(('csta', *path))}")
    assert "argparse" in imported_modules(result.stderr)  # importtime's output was read
    assert torch_imports(result.stderr) == []


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "x"],
    ["model", "macs", "paper"],
    ["evaluate"],
    ["grid", "--jobs", "two"],
    ["no-such-command"],
], ids=" ".join)
def test_argument_errors_import_no_torch(argv):
    result = run([sys.executable, "-X", "importtime", "-m", "csta_lib.cli", *argv])
    assert result.returncode == 2
    assert "error:" in result.stderr
    assert torch_imports(result.stderr) == []


def test_help_texts_name_only_commands_that_exist():
    parsers = dict(command_parsers(build_parser()))
    named = set()
    for parser in parsers.values():
        text = parser.format_help() + "".join(a.help or "" for a in parser._actions)
        for match in re.finditer(r"`csta((?: [a-z][a-z-]*)+)", text):
            named.add(tuple(match.group(1).split()))
    assert named, "no `csta ...` reference found: the pattern is wrong"
    for words in named:
        known = max(i for i in range(len(words) + 1) if words[:i] in parsers)  # the longest command prefix
        assert known >= 1, f"`csta {' '.join(words)}` names no command"
        has_sub = any(isinstance(a, argparse._SubParsersAction) for a in parsers[words[:known]]._actions)
        assert known == len(words) or not has_sub, f"`csta {' '.join(words)}`: {words[known]!r} is no sub-command"


def test_missing_extra_names_the_extra():
    assert missing_extra(ModuleNotFoundError("No module named 'pandas'", name="pandas")) == (
        "'pandas' is not installed: pip install 'csta-book[book]'")
    assert "csta-book[video]" in missing_extra(ModuleNotFoundError(name="av.audio.fifo"))
    assert "csta-book[ray]" in missing_extra(ModuleNotFoundError(name="ray"))
    assert missing_extra(ModuleNotFoundError(name="no_such_package")) is None  # a bug, not a missing extra
    assert missing_extra(ImportError("cannot import name 'x' from 'pandas'", name="pandas")) is None
    assert missing_extra(ValueError("pandas")) is None


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("extras")
    (folder / "store").mkdir()
    (folder / "clip.mp4").write_bytes(b"not decoded: PyAV is missing")
    return {"folder": folder,
            "data": write_tiny_eccv16(folder / "eccv16_dataset_summe_tiny.h5"),
            "splits": write_splits(folder / "splits.txt", [([1, 2, 3, 4], [5, 6])])}


@pytest.mark.parametrize("name", ["results", "train --set", "summarize", "grid --engine ray"])
def test_a_command_whose_extra_is_missing_says_which_to_install(name, tiny_files):
    folder = tiny_files["folder"]
    argv, module, extra = {
        "results": (["results", "table", "--store", str(folder / "store")], "pandas", "book"),
        "train --set": (["train", "--data", str(tiny_files["data"]), "--splits-file", str(tiny_files["splits"]),
                         "--split", "0", "--epochs", "1", "--set", "skip_norm=layernorm",
                         "--store", str(folder / "store")], "yaml", "book"),
        "summarize": (["summarize", str(folder / "clip.mp4"), "-o", str(folder / "summary.mp4"),
                       "--checkpoint", str(folder / "none.pt")], "av", "video"),
        "grid --engine ray": (["grid", "--experiment", "table1", "--profile", "smoke", "--engine", "ray",
                               "--store", str(folder / "grid-store"), "--no-progress"], "ray", "ray"),
    }[name]
    result = run([*CORE_ONLY, "-m", "csta_lib.cli", *argv])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [  # one line, before any work (no progress, no data prepared)
        f"csta {argv[0]}: error: '{module}' is not installed: pip install 'csta-book[{extra}]'"]
