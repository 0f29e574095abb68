"""Split files of every family, read into one :class:`Split` type.

Families (CSTA's own folds: the book's method page, section method-loss):

* CSTA ``{SumMe,TVSum}_splits.txt``: one line per fold, ``Dataset/splitK/<train csv>/<test csv>``.
* PGL-SUM / CA-SUM / VASNet / MSVA ``.json``: a list of ``{"train_keys": [...], "test_keys": [...]}``.
* DSNet ``.yml``: the same list, with keys like ``../datasets/eccv16_dataset_summe_google_pool5.h5/video_22``.

Keys of the dataset a split belongs to become plain ``video_k``. Augmented / transfer files also
name videos of other datasets (OVP, YouTube, the other benchmark); those keep a qualified
``<dataset>/video_k`` form so they can never be mistaken for a video of this dataset.

A user dataset (``csta data build``) has its own name and its own number of videos: its split files are read
with that name (``load_splits(path, "my_clips")``), their keys checked against the data file by
:meth:`Split.validate`. :func:`seeded_folds` makes K folds of any dataset's keys and :func:`csta_split_text` writes
them in CSTA's text format (``csta data split``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib.data.eccv16 import DATASETS, N_VIDEOS, check_dataset_name, video_sort_key
from csta_lib.errors import ConfigError, DataFormatError, MissingDataError, first_line

# Matched with fullmatch / \Z and ASCII digits: "$" would accept a trailing newline ("video_1\n"), "\d" any script's
# digits. Keys are taken exactly as written: whitespace around a key is an error, not trimmed.
_QUALIFIED = re.compile(r"(?:^|/)(?:eccv16_dataset_)?([A-Za-z0-9]+?)(?:_google_pool5)?(?:\.h5)?/(video_[0-9]+)\Z")
_PLAIN = re.compile(r"video_[0-9]+")


@dataclass(frozen=True)
class Split:
    """One train/test fold. ``index`` is 0-based (CSTA's file calls it ``split0``)."""

    dataset: str
    index: int
    train_keys: tuple[str, ...]
    test_keys: tuple[str, ...]
    source: str  # file the split came from (name only, plus the family)

    @property
    def keys(self) -> tuple[str, ...]:
        """Train then test keys."""
        return self.train_keys + self.test_keys

    def validate(self, available: Iterable[str], where: str = "") -> Split:
        """Raise :class:`DataFormatError` naming the keys that ``available`` (a dataset's keys) lacks."""
        have = set(available)
        own = [k for k in self.keys if "/" not in k]  # qualified keys belong to other datasets
        missing = sorted({k for k in own if k not in have}, key=video_sort_key)
        if missing:
            raise DataFormatError(
                f"{self.source} split {self.index} ({self.dataset}): key(s) {', '.join(missing)} not in "
                f"{where or 'the dataset'} (which has {len(have)} videos)")
        return self


def _dataset_from_name(text: str) -> str | None:
    lowered = text.lower()
    found = [d for d in DATASETS if d in lowered]
    return found[0] if len(found) == 1 else None


def _normalise_key(key: Any, dataset: str, path: Path, index: int) -> str:
    """``video_k`` for this dataset's videos, ``other/video_k`` for other datasets' videos."""
    if not isinstance(key, str):
        raise DataFormatError(f"{path}: split {index}: video key {key!r} is not a string")
    text = key
    if _PLAIN.fullmatch(text):
        return text
    match = _QUALIFIED.search(text)
    if not match:
        raise DataFormatError(f"{path}: split {index}: cannot read video key {text!r}")
    owner, video = match.group(1).lower(), match.group(2)
    return video if owner == dataset else f"{owner}/{video}"


def _check_canonical(split: Split, path: Path) -> None:
    """Plain keys must be video_1..video_N of the dataset (a benchmark; a user dataset's keys are checked against
    its file by :meth:`Split.validate`), each listed once; train and test must not overlap."""
    for part, keys in (("train", split.train_keys), ("test", split.test_keys)):
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise DataFormatError(f"{path}: split {split.index}: key {key} listed twice in its {part} keys")
            seen.add(key)
    if split.dataset in N_VIDEOS:
        split.validate((f"video_{i}" for i in range(1, N_VIDEOS[split.dataset] + 1)),
                       where=f"{split.dataset} (video_1 … video_{N_VIDEOS[split.dataset]})")
    overlap = set(split.train_keys) & set(split.test_keys)
    if overlap:
        raise DataFormatError(f"{path}: split {split.index}: keys in both train and test: "
                              f"{', '.join(sorted(overlap, key=video_sort_key))}")
    if not split.test_keys:
        raise DataFormatError(f"{path}: split {split.index}: no test keys")


def _csta_rows(path: Path, text: str) -> tuple[str | None, list[tuple[list[str], list[str]]]]:
    rows, named = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split("/")
        if len(parts) != 4:
            raise DataFormatError(f"{path}: line {number}: expected 'Dataset/splitK/train csv/test csv', "
                                  f"got {len(parts)} '/'-separated fields")
        named = named or _dataset_from_name(parts[0])
        rows.append(([k for k in parts[2].split(",") if k], [k for k in parts[3].split(",") if k]))
    return named, rows


def _list_rows(path: Path, data: Any) -> list[tuple[list[Any], list[Any]]]:
    if not isinstance(data, list) or not data:
        raise DataFormatError(f"{path}: expected a non-empty list of folds")
    rows = []
    for i, fold in enumerate(data):
        if not isinstance(fold, dict) or "train_keys" not in fold or "test_keys" not in fold:
            raise DataFormatError(f"{path}: fold {i}: expected a mapping with 'train_keys' and 'test_keys'")
        rows.append((list(fold["train_keys"]), list(fold["test_keys"])))
    return rows


def _read_rows(path: Path) -> tuple[str, str | None, list[tuple[list[Any], list[Any]]]]:
    """(family, dataset named inside the file or None, raw rows)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a text split file ({exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".txt":
        named, rows = _csta_rows(path, text)
        return "csta", named, rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DataFormatError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
        return "json", None, _list_rows(path, data)
    if suffix in (".yml", ".yaml"):
        # imported here: pyyaml is the [book] extra, not a core dependency, and only DSNet's split files are
        # YAML (without it, ModuleNotFoundError: the CLI says which extra to install)
        import yaml

        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            first = first_line(exc)
            raise DataFormatError(f"{path}: not valid YAML ({first})") from None
        return "dsnet", None, _list_rows(path, data)
    raise DataFormatError(f"{path}: unknown split file type {suffix!r} (expected .txt, .json or .yml)")


def load_splits(path: str | os.PathLike[str], dataset: str | None = None) -> list[Split]:
    """Read a split file of any family into a list of :class:`Split`.

    ``dataset`` defaults to what the file or its name says (``SumMe``/``TVSum``); a user dataset's name must
    be given. Keys are checked to be videos of that dataset (``video_1 … video_N`` of a benchmark) and
    train/test to be disjoint; use :meth:`Split.validate` to check them against the keys of a loaded h5 file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such split file")
    family, named, rows = _read_rows(path)
    if dataset is not None:
        dataset = check_dataset_name(dataset)
        if named is not None and dataset in DATASETS and named != dataset:
            raise DataFormatError(f"{path}: the file's folds are for {named}, not {dataset}")
    else:
        dataset = named or _dataset_from_name(path.name)
        if dataset is None:
            raise DataFormatError(f"{path}: cannot tell the dataset from the file; pass dataset='summe' or 'tvsum'")
    if not rows:
        raise DataFormatError(f"{path}: no folds")
    source = f"{path.parent.name}/{path.name} ({family})"
    splits = []
    for i, (train, test) in enumerate(rows):
        split = Split(dataset=dataset, index=i,
                      train_keys=tuple(_normalise_key(k, dataset, path, i) for k in train),
                      test_keys=tuple(_normalise_key(k, dataset, path, i) for k in test), source=source)
        _check_canonical(split, path)
        splits.append(split)
    return splits


# --------------------------------------------------------------------------------------------
# making and writing folds


def seeded_folds(dataset: str, keys: Iterable[str], n_folds: int, seed: int) -> list[Split]:
    """``n_folds`` folds of ``keys``: the test sets are disjoint, cover every key and differ in size by at most one;
    each fold trains on the other keys. Which key goes where is a seeded shuffle (``numpy.random.default_rng(seed)``),
    so the same keys, folds and seed always give the same folds; keys inside a fold keep the video order."""
    ordered = sorted(dict.fromkeys(keys), key=video_sort_key)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= len(ordered):
        raise ConfigError(f"{dataset}: cannot make {n_folds!r} folds of {len(ordered)} videos (folds: 2 to the "
                          "number of videos, so that every fold has test and training videos)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"split seed must be a non-negative integer, got {seed!r}")
    shuffled = [ordered[i] for i in np.random.default_rng(int(seed)).permutation(len(ordered))]
    folds = []
    for index in range(int(n_folds)):
        test = set(shuffled[index::n_folds])
        folds.append(Split(dataset=dataset, index=index, train_keys=tuple(k for k in ordered if k not in test),
                           test_keys=tuple(k for k in ordered if k in test), source=f"seeded folds (seed {seed})"))
    return folds


def csta_split_text(dataset: str, splits: Iterable[Split]) -> str:
    """The folds as CSTA's split file: one line per fold, ``Dataset/splitK/<train csv>/<test csv>``, K from 0."""
    return "".join(f"{dataset}/split{s.index}/{','.join(s.train_keys)}/{','.join(s.test_keys)}\n" for s in splits)
