"""Atomic writes leave either the complete file or nothing."""

from __future__ import annotations

import json
import os
import stat

import pytest

from csta_lib.io import atomic_path, ensure_writable_dir, write_json_atomic


def test_write_json_atomic_round_trip_and_plain_permissions(tmp_path):
    target = write_json_atomic(tmp_path / "sub" / "r.json", {"a": float("nan"), "b": [1, 2]})
    data = json.loads(target.read_text())
    assert data["b"] == [1, 2] and data["a"] != data["a"]  # NaN survives
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_failure_leaves_target_untouched_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_unwritable_directory_is_reported(tmp_path):
    # Root can write anywhere, so make a path that cannot be a directory: below a regular file.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        ensure_writable_dir(blocker / "store")
