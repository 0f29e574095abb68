"""The book's "Data files found" page: which files of the data manifest this build could use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csta_lib.runs.locator import MIRROR_ENV, PROJECT_ROOT, data_roots

STATUS_TEXT = {
    "verified": "verified",
    "unverified": "found",
    "missing": "**missing**",
    "mismatch": "**sha256 mismatch**",
}


def root_label(path: str | None) -> str:
    """Which data root holds ``path`` (a short name) and the path inside it, without machine-specific paths."""
    if not path:
        return "-"
    p = Path(path)
    labels = ["`data/`"]
    roots = data_roots()
    if len(roots) == 3:
        labels.append(f"`${MIRROR_ENV}`")
    labels.append("mirror")
    for root, label in zip(roots, labels, strict=True):
        if p.is_relative_to(root):
            return f"{label}: `{p.relative_to(root).as_posix()}`"
    return f"`{p.relative_to(PROJECT_ROOT) if p.is_relative_to(PROJECT_ROOT) else p.name}`"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _links(text: str) -> str:
    """A table cell with every ``http(s)://`` address in ``text`` made a link."""
    return " ".join(f"<{word}>" if word.startswith(("http://", "https://")) else word
                    for word in _cell(text).split(" "))


def data_files_markdown(rows: list[dict[str, Any]], profile: str) -> str:
    """The MyST page listing every manifest file, its status and where it was found (``rows``:
    :func:`csta_lib.runs.fetch.status_rows`, the table of ``csta data check``)."""
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUS_TEXT}
    features_missing = [r["name"] for r in rows if r["name"].startswith("eccv16.") and r["status"] == "missing"]
    lines = [
        "# Data files found",
        "",
        f"What this build of the book (profile `{profile}`) found through the data locator, which looks in the "
        f"project's `data/`, then in `${MIRROR_ENV}`, then in `../shared/data`. Same table as `csta data check`.",
        "",
        f"{counts['verified']} verified, {counts['unverified']} found without a checksum, "
        f"{counts['missing']} missing, {counts['mismatch']} with a checksum mismatch. In the table, *verified* means "
        "found with the published sha256; *mirror* is `../shared/data`; a missing file's row says where to put it.",
        "",
    ]
    if features_missing:
        lines += [
            ":::{important}",
            "The GoogLeNet pool5 feature files (" + ", ".join(f"`{n}`" for n in features_missing) + ") are "
            "missing, so every result in this book that needs features was computed on **surrogate features** "
            "(real annotations, synthetic features: {ref}`what they are <surrogate-features>`; "
            "{ref}`deviations`). {ref}`reproduce` says where to put the real files.",
            ":::",
            "",
        ]
    lines += ["## What this build found", "", "| file | status | where |", "|---|---|---|"]
    for r in rows:
        where = root_label(r["path"]) if r["path"] else "put it at `data/" + _cell(r["expected"]) + "`"
        lines.append(f"| `{r['name']}` | {STATUS_TEXT.get(r['status'], r['status'])} | {where} |")
    lines += ["", "## Where each file is published", "", "| file | licence | published at |", "|---|---|---|"]
    lines += [f"| `{r['name']}` | {_cell(r['licence'])} | {_links(r['url'])} |" for r in rows]
    return "\n".join(lines) + "\n"
