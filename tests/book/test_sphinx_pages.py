"""The book's generated page parts (csta_lib.book.sphinx_pages): the presets table, the build panel and the
break opportunities added to table cells. The directives are built into pages by test_method_page.py (API page)
and the smoke build."""

from __future__ import annotations

import os
import re
import time

from csta_lib.book import sphinx_pages
from csta_lib.config import PRESETS, ModelConfig


def test_presets_table_lists_every_preset_and_only_the_switches_that_differ() -> None:
    varying, rows, shared = sphinx_pages.presets_rows(PRESETS)
    assert [r[0] for r in rows] == list(PRESETS)
    assert "backbone" in varying and "skip_norm" in shared and not set(varying) & set(shared)
    paper = dict(zip(["preset", *varying], rows[0]))
    assert paper["preset"] == "paper" and paper["skip_connection"] == "KC" and paper["cls_token"] == "on"
    two = {"a": ModelConfig(), "b": ModelConfig(positional_encoding=None)}
    assert sphinx_pages.presets_rows(two)[:2] == (["positional_encoding"], [["a", "FPE"], ["b", "\u2013"]])


def test_table_cells_get_break_points_and_keep_numbers_whole() -> None:
    html = ('<p>splits/csta/SumMe_splits.txt</p><td><code><span class="pre">weights/coral_tflite/x.tflite</span>'
            '</code> 6.0e-08 connection \\(x_{t}_{long_subscript}\\)</td><th>positional_encoding</th>')
    out = sphinx_pages.wrap_table_cells(html)
    assert out.startswith("<p>splits/csta/SumMe_splits.txt</p>")  # prose outside tables is left alone
    assert "weights/<wbr>coral_<wbr>tflite/<wbr>x.<wbr>tflite" in out
    assert '<span class="csta-nowrap">6.0e-08</span>' in out and " connection " in out
    assert "\\(x_{t}_{long_subscript}\\)" in out  # math is MathJax's: untouched
    assert "<th>positional_<wbr>encoding</th>" in out
    assert sphinx_pages.wrap_text("0.547 \u00b1 0.012 (n = 3)") == '<span class="csta-nowrap">0.547 \u00b1</span> 0.012 (n = 3)'
    assert re.sub(r"<wbr>|</?span[^>]*>", "", out) == re.sub(r"</?span[^>]*>", "", html)  # only break points added


def test_build_panel_says_commit_date_profile_and_versions() -> None:
    panel = sphinx_pages.build_panel_html("0123456789ab", "2026-01-02 03:04 UTC", "smoke",
                                          {"python": "3.11.7", "torch": "2.13.0"})
    assert "Built from commit 0123456789ab on 2026-01-02 03:04 UTC, profile smoke." in panel
    assert "<td>torch</td><td>2.13.0</td>" in panel and f'class="{sphinx_pages.PANEL_CLASS}"' in panel
    versions = sphinx_pages.library_versions(("numpy", "no-such-distribution-here"))
    assert versions["no-such-distribution-here"] == "not installed" and re.match(r"\d+\.\d+", versions["numpy"])
    assert re.match(r"[0-9a-f]{12}", sphinx_pages.git_commit())


def test_build_date_honours_source_date_epoch(monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert sphinx_pages.build_date() == "1970-01-01 00:00 UTC"


def test_a_git_that_does_not_answer_is_given_up(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sphinx_pages, "GIT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    assert sphinx_pages.git_commit() == "unknown (git did not answer within 0.5 s)"
    assert time.monotonic() - start < 20


def test_paper_cost_table_shows_each_experiment_and_all_with_the_wall_time_by_nodes(fake_measure) -> None:
    """{csta-paper-cost}: per experiment the distinct runs, CPU time and wall time on 1-16 nodes, from the same
    measured step times as `csta grid --plan` (here stubbed: 1 ms per step and video step)."""
    from csta_lib.runs import cost, grid
    from csta_lib.runs.experiments import EXPERIMENTS

    costs = grid.profile_cost(list(EXPERIMENTS), "paper", 1)
    header, rows = sphinx_pages.paper_cost_rows(costs)
    assert header[:3] == ["experiment", "distinct runs", "CPU time of the runs"] and header[-1] == "wall, 16 nodes"
    assert [r[0] for r in rows] == [*EXPERIMENTS, "all"] and rows[0][1] == "100"
    assert int(rows[-1][1]) < sum(int(r[1]) for r in rows[:-1])  # shared runs count once in "all"
    assert {c["cpu"]["estimate"] for c in costs.values()} == {"measured"}
    assert rows[0][2] == cost.duration(costs["table1"]["cpu"]["cpu_s"])
    page = (sphinx_pages.PROJECT_ROOT / "book" / "reproduce_grid.md").read_text(encoding="utf-8")
    assert page.count("```{csta-paper-cost}") == 1 and "GPU-hours" not in page
