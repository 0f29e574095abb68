"""Atomic writes leave either the complete file or nothing; scratch folders and temporaries are cleaned up (SIGTERM
included); bounded reads of regular files only."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csta_lib.errors import CstaInputError, DiskFullError
from csta_lib.runs import io as io_module
from csta_lib.runs.io import (
    atomic_path,
    check_outputs,
    ensure_writable_dir,
    read_regular_file,
    remove_stale_temporaries,
    scratch_dir,
    write_bytes_atomic,
    write_json_atomic,
)


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


# --- check_outputs: refusals before any work, creating nothing --------------------------------------



def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_output_equal_to_an_input_by_path_symlink_or_hard_link_is_refused(tmp_path):
    data = tmp_path / "data.h5"
    data.write_bytes(b"h5")
    (tmp_path / "link.h5").symlink_to(data)
    os.link(data, tmp_path / "hard.h5")
    for out in (data, tmp_path / "link.h5", tmp_path / "hard.h5", tmp_path / "sub" / ".." / "data.h5"):
        with pytest.raises(CstaInputError, match=r"--out .* is the input --data .*data\.h5"):
            check_outputs({out: "--out"}, {data: "--data"})
    check_outputs({tmp_path / "other.json": "--out"}, {data: "--data"})  # a different file is fine


def test_output_that_is_a_directory_or_below_a_file_is_refused_and_nothing_created(tmp_path):
    (tmp_path / "afile").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises(CstaInputError, match="is a directory"):
        check_outputs([tmp_path])
    with pytest.raises(CstaInputError, match=r"afile is a file, not a folder"):
        check_outputs({tmp_path / "afile" / "deeper" / "out.json": "-o"})
    with pytest.raises(CstaInputError, match="afile is a file"):
        check_outputs([tmp_path / "afile" / "out.json"])
    assert _tree(tmp_path) == before
    check_outputs([tmp_path / "new" / "dirs" / "out.json"])  # missing folders are fine ...
    assert _tree(tmp_path) == before  # ... and are not created by the check


def test_file_names_up_to_the_limit_work_and_longer_ones_are_refused(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    long_ok = tmp_path / "new" / ("a" * (limit - 5) + ".json")
    check_outputs([long_ok])
    write_json_atomic(long_ok, {"ok": 1})  # the temporary name must fit too
    assert json.loads(long_ok.read_text()) == {"ok": 1}
    assert [p.name for p in long_ok.parent.iterdir()] == [long_ok.name]
    with pytest.raises(CstaInputError, match=f"longer than the file system's {limit}"):
        check_outputs({tmp_path / ("b" * (limit + 1)): "--out"})


def test_two_outputs_on_the_same_file_are_refused(tmp_path):
    with pytest.raises(CstaInputError, match="are the same file"):
        check_outputs({tmp_path / "a.json": "--json", tmp_path / "x" / ".." / "a.json": "--sidecar"})


def test_unwritable_folder_is_refused_before_work(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Root ignores permission bits, so simulate a read-only folder (as access(2) reports one).
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(CstaInputError, match=r"-o .*out\.json: folder .*locked is not writable"):
        check_outputs({locked / "sub" / "out.json": "-o"})
    assert list(locked.iterdir()) == []


def test_missing_folders_are_created_only_when_the_write_succeeds(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a" / "b" / "out.json") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert _tree(tmp_path) == []
    with atomic_path(tmp_path / "a" / "b" / "out.json") as tmp:
        tmp.write_bytes(b"full")
    assert (tmp_path / "a" / "b" / "out.json").read_bytes() == b"full"
    assert _tree(tmp_path) == ["a", "a/b", "a/b/out.json"]


def test_disk_full_is_one_clear_error_and_leaves_nothing(tmp_path):
    import errno

    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(DiskFullError, match=r"disk full.*out\.json; nothing was written"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old"
    assert _tree(tmp_path) == ["out.json"]


def test_stale_temporaries_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "resume.pt"
    # A child writer dies (like SIGKILL) inside the block, leaving its temporary behind.
    code = ("import os; from csta_lib.runs.io import atomic_path\n"
            f"with atomic_path({str(target)!r}) as t:\n    t.write_bytes(b'x' * 100); os._exit(9)\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(leftovers) == 1
    other = tmp_path / "other.pt"  # a temporary of another target is not touched
    with atomic_path(other) as live:
        live.write_bytes(b"y")
        assert remove_stale_temporaries(target) == leftovers
        assert live.exists()  # a live writer's temporary is kept, even for the same folder
    write_bytes_atomic(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt", "resume.pt"]


def test_live_temporary_of_the_same_target_is_kept(tmp_path):
    target = tmp_path / "r.json"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"{}")
        assert remove_stale_temporaries(target) == []
        assert tmp.exists()


def test_path_longer_than_path_max_is_refused(tmp_path):
    deep = tmp_path.joinpath(*["d" * 200] * 21) / "out.json"  # every name is fine, the whole path is not
    with pytest.raises(CstaInputError, match="longer than the system's"):
        check_outputs([deep])


def test_output_folder_check_creates_nothing(tmp_path):
    from csta_lib.runs.io import check_output_dir

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CstaInputError, match="--store .*a-file is not a directory"):
        check_output_dir(tmp_path / "a-file", "--store")
    with pytest.raises(CstaInputError, match="not writable: .*a-file is a file"):
        check_output_dir(tmp_path / "a-file" / "store", "--store")
    with pytest.raises(CstaInputError, match="longer than the file system's"):
        check_output_dir(tmp_path / ("s" * 300) / "store", "--store")
    assert check_output_dir(tmp_path / "new" / "store") == tmp_path / "new" / "store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_an_error_about_the_temporary_names_the_target(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(PermissionError) as info, atomic_path(target) as tmp:
        raise PermissionError(13, "Permission denied", str(tmp))  # what a writer reports about its file
    assert str(target) in str(info.value) and ".part" not in str(info.value)
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        raise OSError(f"Unable to create file (unable to open file: name = '{tmp}')")  # h5py's way
    assert str(target) in str(info.value) and ".part" not in str(info.value)
    assert list(tmp_path.rglob("*")) == []


def test_read_regular_file_refuses_what_is_not_a_bounded_regular_file(tmp_path):
    good = tmp_path / "a.json"
    good.write_bytes(b"x" * 100)
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert read_regular_file(good, 100) == read_regular_file(link, 100) == b"x" * 100  # a link to a file is fine
    with pytest.raises(CstaInputError, match="more than 99 bytes"):
        read_regular_file(good, 99)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    for path, what in ((fifo, "a FIFO"), (zero, "a device"), (tmp_path, "a folder"), (loop, "a loop of symbolic")):
        with pytest.raises(CstaInputError, match=what) as info:
            read_regular_file(path, 1000, "record")
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing.json", 10)


def test_sigterm_while_writing_leaves_no_temporary(tmp_path):
    code = ("import os, signal, sys, time\n"
            "from csta_lib.runs.io import atomic_path, scratch_dir, sigterm_cleanup\n"
            "with sigterm_cleanup(), scratch_dir(sys.argv[1], 'test') as work, atomic_path(sys.argv[2]) as tmp:\n"
            "    (work / 'big').write_bytes(b'w' * 1000); tmp.write_bytes(b'{')\n"
            "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "new" / "r.json")], timeout=60)
    assert done.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # neither the scratch folder nor the temporary is left


def test_scratch_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    with scratch_dir(tmp_path, "fetch") as live:
        dead = tmp_path / f".csta-fetch.{io_module._host_tag()}.999999999.0000abcd.part"
        (dead / "pip").mkdir(parents=True)
        other_label = tmp_path / f".csta-other.{io_module._host_tag()}.999999999.0000abcd.part"
        other_label.mkdir()
        legacy = tmp_path / ".csta-fetch-k2j4h5"  # the mkdtemp name of older versions
        legacy.mkdir()
        os.utime(legacy, (time.time() - 2 * 3600,) * 2)
        assert sorted(io_module.remove_stale_scratch(tmp_path, "fetch")) == sorted([dead, legacy])
        assert live.is_dir() and other_label.is_dir()
    assert not live.exists()
