"""The book: vendoring, notebook sources, helpers, and the smoke build (every notebook executed with
papermill at profile=smoke, glued keys present, the site built with -W)."""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from csta_lib.book import build, captions, vendor
from csta_lib.errors import CstaInputError
from csta_lib.runs.locator import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
COMMON_PARAMETERS = {"profile", "datasets", "seeds", "device", "data_mirror", "store_dir"}
# Glued keys each notebook must produce (the prose also references more; see test_referenced_glue_keys).
EXPECTED_GLUE = {
    "01_data": {"data_provenance", "n_files", "n_files_found", "n_videos_summe", "n_videos_tvsum",
                "mean_steps_summe", "mean_steps_tvsum", "human_tau_summe", "human_tau_tvsum"},
    "02_model_and_cost": {"model_provenance", "n_steps", "params_paper_millions", "macs_factor",
                          "sp_paper_convention_summe", "sp_paper_convention_tvsum"},
    "03_evaluation_protocols": {"protocols_provenance", "human_tau_summe", "human_rho_tvsum",
                                "random_tau_summe_csta_summe", "upper_tau_summe_csta_summe", "levels_videos"},
    "04_main_result": {"table1_provenance", "csta_tau_summe", "csta_rho_summe", "csta_tau_tvsum",
                       "csta_rho_tvsum", "csta_val_tau_summe", "table1_interval", "table1_reading_rule",
                       "retrain_summe_tau", "retrain_tvsum_rho"},
    "05_cnn_verification": {"fig4_provenance", "fig4_googlenet_tau_summe", "fig4_reading_rule"},
    "06_ablations": {"table2_provenance", "table2_full_tau_summe", "table2_baseline_tau_summe",
                     "dev_coded_tau_summe", "dev_layernorm_tau_summe", "dev_bilinear_tau_summe",
                     "table2_reading_rule"},
    "07_attention_maps": {"attention_provenance", "attention_n_videos"},
    "09_fidelity": {"fidelity_provenance", "fidelity_forward_max_rel", "fidelity_n_presets",
                    "fidelity_loss_rel_dropout", "fidelity_loss_rel_no_dropout", "fidelity_eval_agree"},
    "10_own_videos": {"own_n_videos", "own_duration", "own_build_time", "own_realtime", "own_style",
                      "own_shot_settings", "own_summary_clip", "own_feature_mismatch"},
}
GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`]+)`")


def notebook_sources() -> list[Path]:
    return build.list_notebooks(NOTEBOOKS)


def read_nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def referenced_keys(nb: dict) -> set[str]:
    """Glue keys used by ``{glue...}`key``` roles in the markdown cells (``key:format`` allowed); a key of another
    notebook (``other.ipynb::key``) is left out: that notebook glues it."""
    keys = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for ref in GLUE_ROLE.findall("".join(cell["source"])):
                if "::" not in ref:
                    keys.add(ref.split(":")[0])
    return keys


def glued_keys(nb: dict) -> set[str]:
    """Keys glued by myst-nb in the executed notebook's outputs."""
    keys = set()
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if scrap:
                keys.add(scrap["name"])
    return keys


def error_outputs(nb: dict) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb["cells"] for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


# ---------------------------------------------------------------------------------------------------------
# notebook sources


def test_every_chapter_notebook_exists() -> None:
    names = {p.stem for p in notebook_sources()}
    assert set(EXPECTED_GLUE) <= names


@pytest.mark.parametrize("name", sorted(EXPECTED_GLUE))
def test_notebook_source_is_thin_parameterized_and_unexecuted(name: str) -> None:
    nb = read_nb(NOTEBOOKS / f"{name}.ipynb")
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assigned = set(re.findall(r"^(\w+)\s*=", "".join(tagged[0]["source"]), flags=re.M))
    assert assigned >= COMMON_PARAMETERS, f"missing parameters: {COMMON_PARAMETERS - assigned}"
    assert 'profile = "quick"' in "".join(tagged[0]["source"]), "default profile is quick"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "committed without outputs"
            lines = [line for line in "".join(cell["source"]).splitlines() if line.strip()]
            assert len(lines) <= 25, f"a {len(lines)}-line cell belongs in the library"
    first_code = "".join(next(c for c in nb["cells"][nb["cells"].index(tagged[0]) + 1:]
                              if c["cell_type"] == "code")["source"])
    assert "Ran on:" in first_code, "the notebook states at the top what data it ran on"


def test_no_hand_typed_glue_keys_are_missing_from_expectations() -> None:
    # every referenced key is glued by the notebook itself (checked on executed copies below); here: the
    # sources reference at least the expected keys, so the prose really uses the glued numbers
    for name, expected in EXPECTED_GLUE.items():
        refs = referenced_keys(read_nb(NOTEBOOKS / f"{name}.ipynb"))
        assert refs, f"{name}: no glued numbers in the prose"


# ---------------------------------------------------------------------------------------------------------
# build helpers


def test_hide_injected_parameters_tags_only_papermills_cell(tmp_path: Path) -> None:
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "profile = 'quick'", "outputs": []},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'smoke'",
         "outputs": []},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    build.hide_injected_parameters(path)
    cells = read_nb(path)["cells"]
    assert cells[0]["metadata"]["tags"] == ["parameters"]
    assert cells[1]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]


def test_list_notebooks_selects_by_prefix_and_rejects_unknown() -> None:
    assert [p.stem for p in build.list_notebooks(NOTEBOOKS, ["04"])] == ["04_main_result"]
    with pytest.raises(CstaInputError, match="no notebook matches"):
        build.list_notebooks(NOTEBOOKS, ["99_nothing"])


def test_build_rejects_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(CstaInputError, match="unknown profile"):
        build.build("fast", book_root=tmp_path)


def test_failing_notebook_is_named_and_recorded(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError('boom from the notebook')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "09_fails.ipynb"
    nbformat.write(nb, source)
    run = build.execute_notebook(source, tmp_path / "out" / source.name, {"profile": "smoke"}, cwd=tmp_path)
    assert run.name == "09_fails"
    assert run.error and "boom from the notebook" in run.error
    injected = [c for c in read_nb(run.output)["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "remove-cell" in injected[0]["metadata"]["tags"]


# ---------------------------------------------------------------------------------------------------------
# vendoring


def test_integrity_check_accepts_the_right_bytes_only() -> None:
    data = b"some tarball"
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    vendor.check_integrity(data, good)
    with pytest.raises(vendor.VendorError, match="checksum mismatch"):
        vendor.check_integrity(data + b"!", good)


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_extract_keeps_only_needed_files_and_licences(tmp_path: Path) -> None:
    pkg = vendor.NpmPackage("x", "1.0.0", "", "x", keep=("dist/a.js", "dist/*.woff2", "es5/ui/"),
                            licence="MIT", licence_files=("LICENSE",))
    data = _tarball({"dist/a.js": b"a", "dist/f.woff2": b"f", "dist/sub/g.woff2": b"g", "dist/b.js": b"b",
                     "es5/ui/menu.js": b"m", "LICENSE": b"MIT text", "README.md": b"r"})
    written = vendor.extract(pkg, data, tmp_path)
    assert written == ["LICENSE", "dist/a.js", "dist/f.woff2", "es5/ui/menu.js"]
    assert not (tmp_path / "dist" / "b.js").exists()
    with pytest.raises(vendor.VendorError, match="expected files"):
        vendor.extract(pkg, _tarball({"dist/a.js": b"a"}), tmp_path / "again")


def test_packages_come_through_npm_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor.shutil, "which", lambda name: None)
    with pytest.raises(vendor.VendorError, match="npm is not installed"):
        vendor.fetch_tarball(vendor.PACKAGES[0], tmp_path)  # no download by a registry's address instead
    assert list(tmp_path.iterdir()) == []


def test_vendored_folder_is_complete_and_reused_without_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    dest = vendor.vendor()  # fetches once on a fresh checkout (npm pack)
    # the scripts _config.yml loads (relative to the vendor folder)
    for rel in ("requirejs/require.js", "html-manager/dist/embed-amd.js", "mathjax/es5/tex-mml-chtml.js"):
        assert (dest / rel).is_file()
    for pkg in vendor.PACKAGES:
        assert list((dest / pkg.folder).rglob("LICENSE*")), f"{pkg.name}: licence missing"
    assert all(p.stat().st_size < 5_000_000 for p in dest.rglob("*") if p.is_file())
    assert dest.name != "_static"

    def no_network(*args: object) -> bytes:
        raise AssertionError("vendor() fetched although everything was present")

    monkeypatch.setattr(vendor, "fetch_tarball", no_network)
    assert vendor.vendor() == dest


# ---------------------------------------------------------------------------------------------------------
# captions and widgets


def test_record_caption_names_features_weights_policy_and_seeds() -> None:
    records = [
        {"dataset": "summe", "seed": s, "split": {"index": k}, "n_epochs": 3,
         "provenance": {"surrogate": True, "imagenet_weights": None}}
        for s in (0, 1) for k in (0, 1, 2)
    ]
    text = captions.record_caption(records, policy="test-max")
    assert text == "SumMe, surrogate features, random CNN init, test-max selection, seeds 0-1, splits 0-2, 3 epochs"
    records[0]["provenance"] = {"surrogate": False, "imagenet_weights": "weights/torchvision/googlenet-1378be20.pth"}
    assert "surrogate features" in captions.record_caption(records)  # any surrogate run labels the whole set
    assert captions.int_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


def test_data_page_flags_missing_features_as_surrogate() -> None:
    from csta_lib.book.datafiles import data_files_markdown

    rows = [{"name": "eccv16.summe", "status": "missing", "path": None, "expected": "eccv16/x.h5",
             "url": "https://example.org", "licence": "research"},
            {"name": "tvsum.annotations", "status": "verified", "path": None, "expected": "tvsum/y.mat",
             "url": "u", "licence": "l"}]
    page = data_files_markdown(rows, "smoke")
    assert page.startswith("# Data files found")
    assert "surrogate features" in page and "1 verified" in page and "1 missing" in page


def test_pages_quote_the_builds_time_estimates_and_sizes() -> None:
    """The reproduce pages show one profile table, generated from the sizes the runs use and the estimate that
    `python -m csta_lib.book.build` prints, so that no hand-typed table can disagree with them."""
    from csta_lib.book.sphinx_pages import profiles_rows
    from csta_lib.runs.experiments import PROFILE_SIZES, Size

    pages = "".join((PROJECT_ROOT / "book" / name).read_text(encoding="utf-8")
                    for name in ("reproduce.md", "reproduce_grid.md"))
    assert pages.count("```{csta-profiles}") == 1 and "| profile |" not in pages
    sizes = {"quick": {"table1": Size(("summe", "tvsum"), (0,), (0, 1, 2), 3),
                       "table2": Size(("summe",), (0,), (0,), 3)}}
    rows = profiles_rows(sizes, {"quick": "ten minutes"})
    assert rows == [["quick", "table1", "summe + tvsum", "0", "0\u20132", "3", "ten minutes"],
                    ["", "table2", "summe", "0", "0", "3", ""]]
    generated = profiles_rows(PROFILE_SIZES, build.EXPECTED_TIME)
    assert [r[0] for r in generated if r[0]] == list(PROFILE_SIZES)
    assert {r[-1] for r in generated if r[-1]} == set(build.EXPECTED_TIME.values())


def test_reproduce_page_shows_both_parameter_forms() -> None:
    page = (PROJECT_ROOT / "book" / "reproduce.md").read_text(encoding="utf-8")
    assert "-p datasets tvsum" in page and '-y "datasets: [tvsum]"' in page


# ---------------------------------------------------------------------------------------------------------
# rerunning one chapter with papermill's own parameter forms (strings from -p, YAML from -y)


def papermill_run(name: str, output: Path, *args: str) -> subprocess.CompletedProcess:
    """``papermill notebooks/NAME.ipynb OUTPUT -p profile smoke ARGS`` as a reader would type it."""
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(output), "-p", "profile", "smoke",
         *args, "--log-level", "ERROR", "--cwd", str(PROJECT_ROOT)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)


def output_text(nb: dict) -> str:
    """Every code cell's text output (streams, plain text, Markdown, HTML; images left out)."""
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            for mime, data in output.get("data", {}).items():
                if mime.startswith("text/"):
                    parts.append("".join(data))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name, args, absent", [
    ("01_data", ("-p", "datasets", "tvsum"), "summe"),
    ("01_data", ("-y", "datasets: [tvsum]"), "summe"),
    ("02_model_and_cost", ("-p", "datasets", '["tvsum"]'), "summe"),
    ("03_evaluation_protocols", ("-p", "datasets", "summe"), "tvsum"),
])
def test_one_dataset_rerun_shows_only_that_dataset(tmp_path: Path, name: str, args: tuple[str, ...],
                                                   absent: str) -> None:
    proc = papermill_run(name, tmp_path / f"{name}.ipynb", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = output_text(read_nb(tmp_path / f"{name}.ipynb"))
    present = "tvsum" if absent == "summe" else "summe"
    assert present in text.lower()
    assert absent not in text.lower(), f"{name} {args}: the outputs mention {absent}"


@pytest.mark.slow
def test_bad_parameter_fails_with_one_clear_error(tmp_path: Path) -> None:
    proc = papermill_run("01_data", tmp_path / "bad.ipynb", "-p", "datasets", "eccv16.[")
    assert proc.returncode != 0
    assert "ParameterError" in proc.stderr and "parameter datasets" in proc.stderr
    assert "accepted:" in proc.stderr and "KeyError" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# the smoke build (slow: executes every notebook; results reused from a cache store on later runs)


def stage_book(book_root: Path) -> Path:
    """Copy the book's sources (config, toc, hand-written pages, vendored JS) to another root."""
    for name in ("_config.yml", "_toc.yml", "book"):
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, book_root / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("_generated", "__pycache__"))
        else:
            shutil.copy2(src, book_root / name)
    return book_root


@functools.cache
def smoke_book() -> tuple[Path, build.BuildReport]:
    """Build the whole book at profile=smoke in a temporary copy of the book root (once per test session)."""
    root = Path(tempfile.mkdtemp(prefix="csta-book-smoke-"))
    atexit.register(shutil.rmtree, root, True)
    vendor.vendor()
    stage_book(root)
    store = PROJECT_ROOT / ".cache" / "test-book-store"  # git-ignored; later test runs reuse trained runs
    report = build.build("smoke", book_root=root, parameters={"store_dir": str(store)}, log=lambda *a, **k: None)
    return root, report


@pytest.mark.slow
def test_smoke_build_executes_every_notebook() -> None:
    root, report = smoke_book()
    assert not report.failed, "; ".join(f"{r.name}: {r.error}" for r in report.failed)
    assert {r.name for r in report.runs} == {p.stem for p in notebook_sources()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_GLUE))
def test_smoke_notebook_glues_expected_keys(name: str) -> None:
    root, _ = smoke_book()
    nb = read_nb(root / build.GENERATED / f"{name}.ipynb")
    assert not error_outputs(nb)
    glued = glued_keys(nb)
    assert EXPECTED_GLUE[name] <= glued, f"missing glue keys: {EXPECTED_GLUE[name] - glued}"
    assert referenced_keys(nb) <= glued, f"prose references unglued keys: {referenced_keys(nb) - glued}"
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "remove-cell" in injected[0]["metadata"]["tags"]
    assert "'smoke'" in "".join(injected[0]["source"]) or '"smoke"' in "".join(injected[0]["source"])


def glued_values(nb: dict) -> dict[str, str]:
    """``{key: its text/plain value}`` of the executed notebook's glued outputs (myst-nb stores it under its
    scrapbook ``mime_prefix``)."""
    values = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if scrap:
                mime = scrap.get("mime_prefix", "") + "text/plain"
                values[scrap["name"]] = "".join(output.get("data", {}).get(mime, ""))
    return values


@pytest.mark.slow
def test_smoke_own_videos_chapter_trains_on_the_built_file_and_summarizes_without_a_mismatch() -> None:
    root, _ = smoke_book()
    nb = read_nb(root / build.GENERATED / "10_own_videos.ipynb")
    values = glued_values(nb)
    assert values["own_n_videos"].strip("'") == "5" and values["own_feature_mismatch"].strip("'") == "no"
    assert values["own_summary_clip"].strip("'").endswith((".mp4", ".mkv"))
    text = json.dumps(nb)
    assert "Feature mismatch: none; warnings: none" in text and "video/mp4" in text
    assert "not SumMe or TVSum and not surrogate features" in text and "worked example written by hand" in text


@pytest.mark.slow
def test_smoke_site_built_with_warnings_as_errors() -> None:
    root, report = smoke_book()
    assert report.index == root / "_build" / "html" / "index.html" and report.index.is_file()
    html = root / "_build" / "html"
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    for name in EXPECTED_GLUE:
        assert f"book/_generated/{name}.html" in pages
    assert "book/_generated/00_data_files.html" in pages
    # the executed notebooks' pages are reachable from the index (through the intro's navigation)
    intro = (html / "book" / "intro.html").read_text()
    for name in EXPECTED_GLUE:
        assert f"_generated/{name}.html" in intro
    # the injected-parameters cell is hidden, the glued numbers are rendered, nothing remote is referenced
    page = (html / "book" / "_generated" / "04_main_result.html").read_text()
    assert "injected-parameters" not in page and "Injected parameters" not in page
    assert "{glue" not in page
    for path in html.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script[^>]+src=\"(https?:)?//", text), f"{path.name} loads a remote script"
        assert "THEBE_JS_URL" not in text
