"""Build the book: execute every notebook with papermill at a profile, then build the static site.

``python -m csta_lib.book.build --profile quick`` (what ``make book`` runs):

0. preflight, before anything is written: works out which data files the chosen notebooks need at the
   profile (:func:`csta_lib.book.preflight.requirements`); when a required one is missing it downloads what is
   public (``csta data fetch``) if the publishers are reachable and fetching is allowed (not ``--no-fetch``,
   not ``CSTA_NO_FETCH=1``), and otherwise stops at once with one table (file, what needs it, where it is
   published, where to put it) and exit code 2, without running any notebook;
1. vendors the offline JavaScript if needed (``csta_lib.book.vendor``);
2. writes the "Data files found" page into ``book/_generated/``;
3. runs each ``notebooks/NN_*.ipynb`` with papermill (parameter ``profile`` and any ``-p NAME VALUE``)
   into ``book/_generated/``, its kernel rendering figures by :mod:`csta_lib.book.figure_policy` - the
   injected-parameters cell is tagged ``remove-cell`` so the page does not show it; a notebook that raises is
   named loudly and fails the command (exit 1);
4. runs ``jupyter-book build . -W --keep-going`` with notebook execution off, into ``_build/html`` (the
   profile in the environment, :data:`PROFILE_ENV`, for the build panel of every page);
5. prints the total time and the file to open.

Results come from the results store, so a second build reuses finished training runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csta_lib.book import preflight
from csta_lib.book.datafiles import data_files_markdown
from csta_lib.book.vendor import vendor
from csta_lib.errors import CstaInputError, MissingDataError
from csta_lib.runs import locator
from csta_lib.runs.experiments import PROFILES
from csta_lib.runs.fetch import status_rows
from csta_lib.runs.io import write_bytes_atomic
from csta_lib.runs.locator import MIRROR_ENV, PROJECT_ROOT

NOTEBOOK_DIR = preflight.NOTEBOOK_DIR
GENERATED = Path("book") / "_generated"  # relative to the book root
HIDE_TAG = "remove-cell"
# Tag papermill puts on the cell it injects with the run's parameters.
INJECTED_TAG = "injected-parameters"
# Every notebook's kernel starts with the book's figure policy (PNG size and the smallest text recorded in it).
KERNEL_ARGUMENTS = ("--IPKernelApp.exec_lines=['from csta_lib.book import figure_policy; figure_policy.install()']",)

#: Set for the jupyter-book process: the profile the notebooks ran at (the build panel of every page shows it).
PROFILE_ENV = "CSTA_BOOK_PROFILE"

EXPECTED_TIME = {
    "smoke": "a few minutes on a 2-core CPU the first time; later builds reuse the stored runs",
    "quick": "at most 15 minutes on a 2-core CPU (9 min 27 s from an empty store on a 2-core AMD EPYC, AVX-512)",
    "paper": "GPU work: many hours (5 splits x 100 epochs x several seeds for every experiment)",
}


class BookDataMissing(MissingDataError):
    """Required data files are missing and could not be fetched; the message is the preflight's table."""


@dataclass
class NotebookRun:
    """Outcome of executing one notebook."""

    name: str
    output: Path
    seconds: float
    error: str | None = None


@dataclass
class BuildReport:
    """What a build did: notebook runs, the site's index file, total time."""

    runs: list[NotebookRun] = field(default_factory=list)
    index: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[NotebookRun]:
        return [r for r in self.runs if r.error]


def list_notebooks(source_dir: Path = NOTEBOOK_DIR, only: Sequence[str] = ()) -> list[Path]:
    """The notebooks to run, in file-name order; ``only`` selects by name or name prefix (e.g. ``04``)."""
    notebooks = sorted(p for p in source_dir.glob("[0-9]*.ipynb") if not p.name.startswith("."))
    if only:
        chosen = [p for p in notebooks if any(p.stem == o or p.name == o or p.stem.startswith(o) for o in only)]
        unknown = [o for o in only if not any(p.stem == o or p.name == o or p.stem.startswith(o) for p in notebooks)]
        if unknown:
            raise CstaInputError(
                f"no notebook matches {unknown}; available: {', '.join(p.stem for p in notebooks)}"
            )
        return chosen
    return notebooks


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the page does not show it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            tags.append(HIDE_TAG)
            changed = True
    if changed:
        write_bytes_atomic(path, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _error_summary(exc: BaseException) -> str:
    """One line: the exception a notebook cell raised (papermill wraps it)."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip().splitlines()[0][:500]


def execute_notebook(
    source: Path, output: Path, parameters: Mapping[str, Any], cwd: Path = PROJECT_ROOT
) -> NotebookRun:
    """Run one notebook with papermill into ``output``; errors are captured in the returned record."""
    import papermill  # lazily: `csta data fetch --book` imports this module for the notebook list, papermill is slow

    start = time.perf_counter()
    error = None
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=dict(parameters),
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            extra_arguments=list(KERNEL_ARGUMENTS),
        )
    except Exception as exc:  # papermill raises PapermillExecutionError, but a kernel can die too
        error = _error_summary(exc)
    if output.is_file():
        hide_injected_parameters(output)
    return NotebookRun(source.stem, output, time.perf_counter() - start, error)


def write_data_page(book_root: Path, profile: str) -> Path:
    """Write the "Data files found" page (``book/_generated/00_data_files.md``)."""
    target = book_root / GENERATED / "00_data_files.md"
    write_bytes_atomic(target, data_files_markdown(status_rows(), profile).encode("utf-8"))
    return target


def remove_stale_pages(generated: Path, keep: Sequence[str]) -> None:
    """Delete executed notebooks whose source no longer exists (the toc globs the folder)."""
    if not generated.is_dir():
        return
    for page in generated.glob("[0-9]*.ipynb"):
        if page.stem not in keep:
            page.unlink()


def jupyter_book_command(book_root: Path, builder: str = "html") -> list[str]:
    """``jupyter-book build ROOT -W --keep-going`` run with this interpreter."""
    return [
        # jupyter_book.cli.main has no __main__ guard; call its click group as the console script does
        sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build", str(book_root),
        "--builder", builder, "-W", "--keep-going",
    ]


def build_site(book_root: Path = PROJECT_ROOT, quiet: bool = False, profile: str | None = None) -> Path:
    """Run jupyter-book on ``book_root``; return the site's ``index.html``. Raises on a failed build.
    ``profile``: the profile the notebooks ran at, for the build panel (:data:`PROFILE_ENV`)."""
    env = {**os.environ, **({PROFILE_ENV: profile} if profile else {})}
    proc = subprocess.run(jupyter_book_command(book_root), cwd=book_root, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-8000:])
        sys.stderr.write(proc.stderr[-8000:])
    elif not quiet:  # on success only the warnings matter (there should be none: -W makes them errors)
        for line in (proc.stdout + proc.stderr).splitlines():
            if "WARNING" in line or "ERROR" in line:
                print(line)
    index = book_root / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not index.is_file():
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}); see the messages above")
    return index


def check_data(profile: str, notebooks: Sequence[Path], parameters: Mapping[str, Any], fetch: bool = True,
               log=print) -> dict[str, dict[str, Any]]:
    """The preflight: make sure the notebooks' required data files are there (fetching public ones when
    allowed and online), else raise :class:`BookDataMissing` with one table. Returns per-notebook parameter
    overrides (the summarize chapter's public fallback clip when the default video is absent)."""
    if parameters.get("data_mirror"):  # the notebooks set it too; the preflight must look there as well
        os.environ[MIRROR_ENV] = str(parameters["data_mirror"])
    allowed = fetch and not preflight.fetch_disabled()
    result = preflight.preflight(profile, [p.stem for p in notebooks], parameters, fetch=allowed, log=log)
    if result.missing:
        message = result.report(profile)
        if not allowed:
            message += "\n(downloading was switched off: --no-fetch or CSTA_NO_FETCH)"
        raise BookDataMissing(message)
    for note in preflight.optional_notes(result.requirements):
        log(f"[book] note: {note}")
    overrides: dict[str, dict[str, Any]] = {}
    video_chapter = next((p.stem for p in notebooks if p.stem.startswith("08")), None)
    default_video = preflight.notebook_defaults(video_chapter).get("video") if video_chapter else None
    if video_chapter and default_video and "video" not in parameters and locator.find(default_video) is None:
        overrides[video_chapter] = {"video": preflight.FALLBACK_VIDEO}
        log(f"[book] {video_chapter}: {default_video} not found; summarizing the public clip "
            f"{preflight.FALLBACK_VIDEO} instead")
    return overrides


def build_parameters(source: Path, generated: Path) -> dict[str, Any]:
    """Parameters the build itself supplies to a notebook that declares them: ``downloads_dir`` (files the
    page links with ``{download}``) goes beside the executed notebook, wherever the book is built."""
    import papermill  # lazily, as in execute_notebook

    declared = papermill.inspect_notebook(str(source))
    return {"downloads_dir": str(generated / "downloads")} if "downloads_dir" in declared else {}


def build(
    profile: str,
    book_root: Path = PROJECT_ROOT,
    notebooks: Sequence[str] = (),
    parameters: Mapping[str, Any] | None = None,
    source_dir: Path = NOTEBOOK_DIR,
    skip_site: bool = False,
    log=print,
    fetch: bool = True,
) -> BuildReport:
    """Execute the notebooks at ``profile`` into ``book_root/book/_generated`` and build the site.

    The data preflight (:func:`check_data`) runs first: when required data is missing and cannot be
    fetched, :class:`BookDataMissing` is raised before anything is written.
    """
    if profile not in PROFILES:
        raise CstaInputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    start = time.perf_counter()
    report = BuildReport()
    chosen = list_notebooks(source_dir, notebooks)
    params = {"profile": profile, **(parameters or {})}
    overrides = check_data(profile, chosen, params, fetch=fetch, log=log)
    vendor()
    generated = book_root / GENERATED
    write_data_page(book_root, profile)
    if not notebooks:
        remove_stale_pages(generated, [p.stem for p in chosen])
    for source in chosen:
        log(f"[book] running {source.name} (profile={profile}) ...", flush=True)
        run = execute_notebook(source, generated / source.name,
                               {**params, **build_parameters(source, generated), **overrides.get(source.stem, {})})
        report.runs.append(run)
        status = f"FAILED: {run.error}" if run.error else "ok"
        log(f"[book]   {source.name}: {status} ({run.seconds:.1f} s)", flush=True)
    if not skip_site:
        log("[book] building the site: jupyter-book build . -W --keep-going", flush=True)
        report.index = build_site(book_root, profile=profile)
    report.seconds = time.perf_counter() - start
    return report


def _parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: JSON when it parses (numbers, lists, true/false), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csta_lib.book.build",
        description="Execute notebooks/*.ipynb with papermill at a profile into book/_generated/, then "
        "build the Jupyter Book into _build/html (jupyter-book build . -W --keep-going).",
    )
    parser.add_argument("--profile", default="quick", choices=PROFILES,
                        help="experiment size: smoke (seconds), quick (<= 15 min on 2 CPU cores), "
                        "paper (the paper's protocol; GPU work)")
    parser.add_argument("--notebook", action="append", default=[], metavar="NAME",
                        help="run only this notebook (name or prefix such as 04); repeatable; the "
                        "others keep their previous executed copies")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (JSON value), e.g. -p seeds '[0, 1, 2]'")
    parser.add_argument("--no-site", action="store_true", help="only execute the notebooks")
    parser.add_argument("--no-fetch", action="store_true",
                        help="never download missing data files (also: CSTA_NO_FETCH=1); a missing required file "
                        "then stops the build at once with the table of what to put where")
    args = parser.parse_args(argv)
    print(f"[book] profile {args.profile}: expected time {EXPECTED_TIME[args.profile]}", flush=True)
    try:
        report = build(
            args.profile,
            notebooks=args.notebook,
            parameters={k: _parse_value(v) for k, v in args.parameter},
            skip_site=args.no_site,
            fetch=not args.no_fetch,
        )
    except CstaInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    minutes, seconds = divmod(report.seconds, 60)
    print(f"[book] total time: {int(minutes)} min {seconds:.0f} s (profile {args.profile})")
    if report.index:
        print(f"[book] open {report.index.as_uri()}")
    if report.failed:
        for run in report.failed:
            print(f"error: notebook {run.name} raised {run.error}\n  (executed copy with the traceback: "
                  f"{run.output})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
