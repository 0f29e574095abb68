"""``csta data check | fetch | make-surrogate``: output, exit codes, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from csta_lib.cli import main
from csta_lib.data import load_eccv16
from csta_lib.runs.locator import find


def test_check_json_lists_every_manifest_entry(capsys):
    from csta_lib.runs.locator import manifest

    assert main(["data", "check", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(manifest())
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        assert r["status"] in ("verified", "unverified", "missing")
        assert (r["path"] is None) == (r["status"] == "missing")
    if find("splits.csta.summe") is not None:
        assert by_name["splits.csta.summe"]["status"] == "verified"
    if find("eccv16.summe") is None:
        assert by_name["eccv16.summe"]["status"] == "missing" and not by_name["eccv16.summe"]["direct_download"]
    assert by_name["weights.torchvision.googlenet"]["direct_download"]


def test_check_table_gives_instructions_for_missing_files(capsys):
    assert main(["data", "check", "--no-hash"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "status", "where"]
    if find("eccv16.tvsum") is None:
        assert "missing eccv16.tvsum (get it by hand)" in out
        assert "eccv16/eccv16_dataset_tvsum_google_pool5.h5" in out and "PGL-SUM" in out
        assert "surrogate features" in out
    if find("tvsum.annotations") is not None:
        line = next(x for x in out.splitlines() if x.startswith("tvsum.annotations"))
        assert "unverified" in line and "ydata-tvsum50.mat" in line  # --no-hash: present, not hashed


def test_fetch_unknown_name_and_no_direct_url(capsys, tmp_path):
    assert main(["data", "fetch", "no.such.file", "--root", str(tmp_path)]) == 2
    assert "unknown data file 'no.such.file'" in capsys.readouterr().err
    assert main(["data", "fetch", "eccv16.summe", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no direct download URL" in err and "put it at" in err
    assert not list(tmp_path.rglob("*.h5"))


def test_fetch_offline_fails_clearly(capsys, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("socket.create_connection", offline)
    assert main(["data", "fetch", "weights.torchvision.googlenet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not download 'weights.torchvision.googlenet'" in err and "name resolution" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_make_surrogate_writes_a_labelled_file(capsys, tmp_path):
    if find("eccv16.fields") is None and find("summe.gt") is None:
        pytest.skip("neither the eccv16 fields file nor the SumMe GT folder is present")
    out = tmp_path / "sub" / "summe.h5"
    assert main(["data", "make-surrogate", "--dataset", "SumMe", "--out", str(out), "--seed", "3",
                 "--signal", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "surrogate features" in printed and "synthetic: features" in printed
    ds = load_eccv16(out)
    assert ds.is_surrogate and len(ds) == 25
    assert ds.provenance["seed"] == 3 and ds.provenance["signal"] == 0.25


@pytest.mark.parametrize("args, message", [
    (["--dataset", "youtube"], "unknown dataset 'youtube'"),
    (["--dataset", "summe", "--signal", "2"], "signal must be in [0, 1]"),
    (["--dataset", "summe", "--seed", "-4"], "seed must be"),
])
def test_make_surrogate_bad_arguments(capsys, tmp_path, args, message):
    assert main(["data", "make-surrogate", "--out", str(tmp_path / "x.h5"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_make_surrogate_into_an_unwritable_place_leaves_nothing(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(["data", "make-surrogate", "--dataset", "tvsum", "--out", str(blocker / "tvsum.h5")]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_console_command_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "csta_lib.cli", "data", "fetch", "eccv16.tvsum",
                             "--root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no direct download URL" in result.stderr and "Traceback" not in result.stderr


def test_fetch_book_dry_run_on_an_empty_clone(capsys, tmp_path, monkeypatch):
    import csta_lib.book.build  # noqa: F401 - before the patch: it finds the (real) notebooks from the root at import
    from csta_lib.runs import locator

    monkeypatch.setattr(locator, "PROJECT_ROOT", tmp_path / "clone")  # no data/, no ../shared/data
    monkeypatch.delenv(locator.MIRROR_ENV, raising=False)
    assert main(["data", "fetch", "--book", "smoke", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    would = {line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("would fetch")}
    assert {"summe.gt", "tvsum.annotations", "videos.bikes", "weights.coral.mobilenet_v1_embedding"} <= would
    assert "splits.csta.summe" not in would  # the smoke profile writes its own split files
    assert "SumMe.zip" in out and "put these in place by hand" in err and "eccv16.fields" in err
    assert not (tmp_path / "clone").exists()
    assert main(["data", "fetch", "--book", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    assert main(["data", "fetch"]) == 2
    assert "--book PROFILE" in capsys.readouterr().err
