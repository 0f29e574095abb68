"""The results store: one JSON record per training run, content-addressed, and the tables built from records.

Layout under a store directory ``DIR``::

    DIR/<dataset>/<variant>/<key>.json          the run record (written atomically, last)
    DIR/<dataset>/<variant>/<key>/epoch_NNN.pt  checkpoints of the selected epochs (one file per distinct epoch)
    DIR/<dataset>/<variant>/<key>/resume.pt     model, optimizer and RNG state of an unfinished run
                                                (tensors and plain data only: loaded with weights_only=True)
    DIR/<dataset>/<variant>/.<key>.staged/      checkpoints of a forced rerun, moved into place when it finishes

Records are checked when read (:func:`read_record`, :func:`record_problem`): only a regular file of bounded size is
read (never a FIFO, a device or a link loop); a missing entry, a wrong type, a metric out of its range (τ and ρ in
[−1, 1], F1 in [0, 1], finite or undefined), a ``key`` that is not the content address of the record's ``identity``
(or an identity that disagrees with the record), and in a store a file whose name or folders are not the record's
key, dataset and variant (a copied record) are a :class:`DataFormatError` naming the file; ``csta train`` retrains
such a run and replaces its record.

``variant`` is the preset name plus any config overrides (``paper+skip_norm=layernorm``).

``key`` is the content address: a hash of everything that determines the run's result (model config, dataset
file checksum, split keys, seed, epochs, selection and optimiser settings, training-code version; see
:func:`content_key`). A record that exists under its key is found instead of recomputed.

Tables: :func:`results_frame` flattens records into one row per (run, selection policy);
:func:`split_table` gives one row per split (mean over seeds); :func:`summary_table` gives per metric the mean, sd,
n and 95 % t interval over runs (folds × seeds, :mod:`csta_lib.runs.statistics`), :func:`summary_rows` the same
as JSON-ready rows; :func:`paired_table` the paired differences between rows over the runs they share;
:func:`render_table` prints a summary or per-split table as plain text or markdown with the protocol, selection
policy and data provenance in its header.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csta_lib.errors import CstaInputError, DataFormatError
from csta_lib.runs import statistics
from csta_lib.runs.io import read_regular_file, write_json_atomic
from csta_lib.runs.locator import PROJECT_ROOT

if TYPE_CHECKING:  # pandas (the [book] extra) is imported by the table functions only: training needs none of it
    import pandas as pd

RECORD_FORMAT = "csta-run/1"
POLICIES = ("test-max", "val", "last")
POLICY_LABELS = {
    "test-max": "test-max (epoch selected ON THE TEST SPLIT, as the official code)",
    "val": "val (epoch selected on a validation subset of the training videos)",
    "last": "last (final epoch, no selection)",
}
MAX_RECORD_BYTES = 256 << 20  # a 100-epoch TVSum record is a few MB
KEY_LENGTH = 20  # hex digits of sha256 kept in file names: 80 bits, collisions are not a concern here
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.+=-]+")
#: The store the command line and the book use when given none: ``results/store`` in the project (git-ignored).
DEFAULT_STORE_DIR = PROJECT_ROOT / "results" / "store"


# ---------------------------------------------------------------------------------------------------------------
# content address and paths


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal content gives equal text (the hashing input)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)


def content_key(identity: Mapping[str, Any]) -> str:
    """The content address of a run: a hex digest of its canonical identity dict."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:KEY_LENGTH]


def safe_name(name: str | None) -> str:
    """A file-system-safe folder name for a preset or dataset (``custom`` for None)."""
    return _SAFE_NAME.sub("_", name) if name else "custom"


def record_path(store_dir: str | Path, dataset: str, variant: str | None, key: str) -> Path:
    """Where the record of run ``key`` lives (``variant``: the preset name plus any overrides)."""
    return Path(store_dir) / safe_name(dataset) / safe_name(variant) / f"{key}.json"


def checkpoint_dir(record_file: str | Path) -> Path:
    """The folder holding a record's checkpoints (beside the record, named by its key)."""
    record_file = Path(record_file)
    return record_file.with_suffix("")


# ---------------------------------------------------------------------------------------------------------------
# reading and writing records


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a run record atomically (complete or absent, never half-written)."""
    return write_json_atomic(path, dict(record))


def read_record(path: str | Path) -> dict[str, Any]:
    """Read one record; raise :class:`DataFormatError` naming the file if it is not a run record (or not a regular
    file of at most :data:`MAX_RECORD_BYTES`: :func:`csta_lib.runs.io.read_regular_file`)."""
    path = Path(path)
    try:
        record = json.loads(read_regular_file(path, MAX_RECORD_BYTES, "run record").decode("utf-8"))
    except FileNotFoundError:
        raise
    except CstaInputError as exc:  # a FIFO, a device, a link loop, too large
        raise DataFormatError(str(exc)) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise DataFormatError(f"{path}: not a readable JSON run record ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise DataFormatError(f"{path}: not a csta run record (expected format {RECORD_FORMAT!r})")
    problem = record_problem(record)
    if problem:
        raise DataFormatError(f"{path}: damaged csta run record ({problem}); delete it or retrain the run with --force")
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


#: Entries every record has (and what the tables, the grid and ``csta train`` read), with their check.
_REQUIRED = {
    "key": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "dataset": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "variant": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "seed": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "n_epochs": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "split": (lambda v: isinstance(v, dict) and _is_int(v.get("index")) and v["index"] >= 0,
              "an object with a non-negative integer 'index'"),
    "selected": (lambda v: isinstance(v, dict) and all(p in POLICIES and isinstance(s, dict) for p, s in v.items()),
                 "an object mapping selection policies to objects"),
}
#: Entries that may be absent (hand-made or older records) but have a fixed type when present.
_OPTIONAL = {
    "preset": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "protocol": (lambda v: isinstance(v, dict) and isinstance(v.get("rank", ""), str),
                 "an object with a string 'rank'"),
    "provenance": (lambda v: isinstance(v, dict) and isinstance(v.get("surrogate", False), bool),
                   "an object with a boolean 'surrogate'"),
    "selection": (lambda v: isinstance(v, dict) and _is_number_or_none(v.get("val_fraction")),
                  "an object with a numeric 'val_fraction'"),
    "epochs": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
}
_SPLIT_LISTS = ("train_keys", "val_keys", "test_keys")
_SELECTED_NUMBERS = ("test_tau", "test_rho", "test_f1", "val_tau", "val_rho", "val_f1")
#: The range of each metric a record holds (book method page, method-metrics): rank correlations and F1.
METRIC_RANGES = {"tau": (-1.0, 1.0), "rho": (-1.0, 1.0), "f1": (0.0, 1.0)}
#: Entries of a record that its ``identity`` (what the content key hashes) also states: (record path, identity path).
_IDENTITY_AGREES = ((("dataset",), ("dataset",)), (("seed",), ("seed",)), (("n_epochs",), ("epochs",)),
                    (("config",), ("config",)), (("split", "test_keys"), ("split", "test")),
                    (("split", "official_train_keys"), ("split", "train")),
                    (("provenance", "data_sha256"), ("data_sha256",)))


def _metric_problem(where: str, entry: Mapping[str, Any]) -> str | None:
    """A metric of ``entry`` (a selected policy or an epoch) that is not a number, or not in its range: ``where``
    names the entry. Undefined values (None, NaN: a video without a defined correlation) are fine."""
    for name in _SELECTED_NUMBERS:
        if name not in entry:
            continue
        value = entry[name]
        if not _is_number_or_none(value):
            return f"'{where}.{name}' must be a number"
        if value is None or math.isnan(value):
            continue
        low, high = METRIC_RANGES[name.rsplit("_", 1)[1]]
        if not low <= value <= high:
            return f"'{where}.{name}' is {value!r}, outside [{low:g}, {high:g}]"
    return None


def _nested(record: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    """``(present, value)`` of a nested entry such as ``("split", "test_keys")``."""
    value: Any = record
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _identity_problem(record: Mapping[str, Any]) -> str | None:
    """Whether the record's ``key`` is the content address of its ``identity`` and the identity agrees with the
    entries the record states beside it (a record edited or assembled by hand fails here)."""
    identity = record.get("identity")
    if not isinstance(identity, dict):
        return "no 'identity' (what defines the run, hashed into its key): written by an older csta_lib or by hand"
    if content_key(identity) != record["key"]:
        return f"its key {record['key']!r} is not the content address of its identity ({content_key(identity)!r})"
    for in_record, in_identity in _IDENTITY_AGREES:
        (has_a, a), (has_b, b) = _nested(record, in_record), _nested(identity, in_identity)
        if has_a and has_b and canonical_json(a) != canonical_json(b):
            return f"'{'.'.join(in_record)}' disagrees with its identity's '{'.'.join(in_identity)}'"
    return None


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a parsed record (a missing entry, a wrong type, a metric out of range, a key that is not
    the content address of its identity), or None if it is usable."""
    for name, (check, expected) in _REQUIRED.items():
        if name not in record:
            return f"no {name!r}"
        if not check(record[name]):
            return f"{name!r} must be {expected}"
    for name, (check, expected) in _OPTIONAL.items():
        if name in record and not check(record[name]):
            return f"{name!r} must be {expected}"
    for name in _SPLIT_LISTS:
        if name in record["split"] and not _is_str_list(record["split"][name]):
            return f"'split.{name}' must be a list of strings"
    n_epochs = record["n_epochs"]
    for policy, entry in record["selected"].items():
        epoch = entry.get("epoch")
        if "epoch" in entry and not (epoch is None or (_is_int(epoch) and 1 <= epoch <= n_epochs)):
            return f"'selected.{policy}.epoch' must be an epoch from 1 to n_epochs ({n_epochs})"
        problem = _metric_problem(f"selected.{policy}", entry)
        if problem:
            return problem
        if "checkpoint" in entry and not isinstance(entry["checkpoint"], str):
            return f"'selected.{policy}.checkpoint' must be a string"
    for index, entry in enumerate(record.get("epochs", [])):
        problem = _metric_problem(f"epochs[{index}]", entry)
        if problem:
            return problem
    fraction = record.get("selection", {}).get("val_fraction")
    if fraction is not None and not 0 <= fraction < 1:
        return f"'selection.val_fraction' is {fraction!r}, outside [0, 1)"
    return _identity_problem(record)


def layout_problem(path: Path, record: Mapping[str, Any]) -> str | None:
    """Whether a record file in a store sits where its content says (:func:`record_path`): its name is its key and
    its folders are its dataset and variant. A copied or renamed record fails here."""
    if path.stem != record["key"]:
        return f"its key {record['key']!r} is not its file name's {path.stem!r}"
    expected = (safe_name(record["dataset"]), safe_name(record["variant"]))
    if (path.parent.parent.name, path.parent.name) != expected:
        return f"it lies in {path.parent.parent.name}/{path.parent.name}/, not in {'/'.join(expected)}/"
    return None


def read_stored_record(path: Path) -> dict[str, Any]:
    """:func:`read_record` of a file in a store, also checked against its place (:func:`layout_problem`); the
    record gets ``_path``."""
    record = read_record(path)
    problem = layout_problem(path, record)
    if problem:
        raise DataFormatError(f"{path}: misplaced csta run record ({problem}); delete it or retrain the run with "
                              "--force")
    record["_path"] = str(path)
    return record


def find_record(store_dir: str | Path, dataset: str, variant: str | None, key: str) -> dict[str, Any] | None:
    """The stored record with content address ``key`` (with ``_path``), or None if this run was never completed."""
    path = record_path(store_dir, dataset, variant, key)
    if not os.path.lexists(path):
        return None
    return read_stored_record(path)


def iter_record_files(store_dir: str | Path) -> list[Path]:
    """All record files under a store directory, sorted (checkpoint folders are skipped)."""
    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        raise CstaInputError(f"results store {store_dir} does not exist or is not a directory")
    return sorted(p for p in store_dir.glob("*/*/*.json") if not p.name.startswith("."))


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, (set, frozenset, list, tuple)):
        return value in wanted
    return value == wanted


def load_records(
    store_dir: str | Path,
    *,
    dataset: str | Iterable[str] | None = None,
    preset: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    splits: Iterable[int] | None = None,
    seeds: Iterable[int] | None = None,
    epochs: int | Iterable[int] | None = None,
    keys: Iterable[str] | None = None,
    data_sha256: str | Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Records in a store, optionally filtered (each filter: one value or a collection of allowed values).

    ``keys`` restricts to the given content addresses, which is how an experiment grid selects exactly its own
    runs; ``data_sha256`` to the runs on one data file (e.g. a user dataset built by ``csta data build``). Each
    returned record gets ``_path`` (its file) for resolving relative checkpoint paths.
    """

    def as_filter(value: Any) -> Any:
        if value is None or isinstance(value, (str, int)):
            return value
        return set(value)

    wanted = {
        "dataset": as_filter(dataset),
        "preset": as_filter(preset),
        "variant": as_filter(variant),
        "split": as_filter(splits),
        "seed": as_filter(seeds),
        "n_epochs": as_filter(epochs),
        "key": as_filter(keys),
        "data_sha256": as_filter(data_sha256),
    }
    out = []
    for path in iter_record_files(store_dir):
        record = read_stored_record(path)
        fields = {
            "dataset": record.get("dataset"),
            "preset": record.get("preset"),
            "variant": record.get("variant"),
            "split": record.get("split", {}).get("index"),
            "seed": record.get("seed"),
            "n_epochs": record.get("n_epochs"),
            "key": record.get("key"),
            "data_sha256": record.get("provenance", {}).get("data_sha256"),
        }
        if all(_matches(fields[name], wanted[name]) for name in wanted):
            out.append(record)
    return out


def resolve_checkpoint(record: Mapping[str, Any], policy: str) -> Path | None:
    """Absolute path of the checkpoint a record selected under ``policy`` (None if the policy was not run)."""
    selected = record.get("selected", {}).get(policy)
    if not selected or not selected.get("checkpoint"):
        return None
    path = Path(selected["checkpoint"])
    if not path.is_absolute() and record.get("_path"):
        path = Path(record["_path"]).parent / path
    return path


# ---------------------------------------------------------------------------------------------------------------
# tables

METRICS = ("tau", "rho", "f1")


def results_frame(records: Sequence[Mapping[str, Any]], policies: Sequence[str] = POLICIES) -> pd.DataFrame:
    """One row per (record, policy present in it): dataset, variant, split, seed, policy, epoch, τ, ρ, F1, labels."""
    import pandas as pd  # lazily: an optional extra, and training runs import this module (see the top)

    rows = []
    for record in records:
        for policy in policies:
            selected = record.get("selected", {}).get(policy)
            if not selected:
                continue
            rows.append(
                {
                    "dataset": record["dataset"],
                    "variant": record.get("variant") or record.get("preset") or "custom",
                    "preset": record.get("preset"),
                    "policy": policy,
                    "split": record["split"]["index"],
                    "seed": record["seed"],
                    "n_epochs": record.get("n_epochs"),
                    "epoch": selected.get("epoch"),
                    "tau": _nan_if_none(selected.get("test_tau")),
                    "rho": _nan_if_none(selected.get("test_rho")),
                    "f1": _nan_if_none(selected.get("test_f1")),
                    "protocol": record.get("protocol", {}).get("rank", "?"),
                    "surrogate": bool(record.get("provenance", {}).get("surrogate", False)),
                    "user_dataset": bool(record.get("provenance", {}).get("user_dataset", False)),
                    "imagenet_weights": record.get("provenance", {}).get("imagenet_weights"),
                    "val_fraction": record.get("selection", {}).get("val_fraction"),
                    "key": record.get("key"),
                }
            )
    columns = ["dataset", "variant", "preset", "policy", "split", "seed", "n_epochs", "epoch", "tau", "rho", "f1",
               "protocol", "surrogate", "user_dataset", "imagenet_weights", "val_fraction", "key"]
    return pd.DataFrame(rows, columns=columns)


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


GROUP = ["dataset", "variant", "policy"]
#: The key that pairs runs of two rows (:func:`paired_table`): the same fold and seed (on the same dataset).
PAIR_KEY = ["split", "seed"]
#: What the tables' sd and interval are, in words (the note under every printed table).
SPREAD_NOTE = (f"mean over runs (folds x seeds); sd: standard deviation over runs; 95% CI: the "
               f"{statistics.INTERVAL_METHOD}; with one run: n = 1, no interval")


def split_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per split: the mean over seeds of each metric, the std over seeds and the number of seeds."""
    grouped = frame.groupby([*GROUP, "split"], sort=True)
    table = grouped[list(METRICS)].mean()
    stds = grouped[list(METRICS)].std(ddof=1).add_suffix("_std_seeds")
    table = table.join(stds)
    table["epoch_mean"] = grouped["epoch"].mean()
    table["n_seeds"] = grouped["seed"].nunique()
    return table.reset_index()


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, variant, policy): the spread over runs of each metric (:func:`csta_lib.runs.statistics.spread`).

    ``<m>`` is the mean over all runs (folds × seeds); with a complete grid this is the mean over seeds of the
    paper's number (the mean over splits, book method page, method-metrics). ``<m>_sd`` is the standard deviation
    over runs, ``<m>_n`` the number of runs with a defined value, ``<m>_ci_low`` / ``<m>_ci_high`` the 95 % t
    interval of the mean (NaN with fewer than two runs). :func:`row_spread` gives them back as a ``Spread``.
    """
    import pandas as pd  # lazily, as in results_frame

    rows = []
    for group_key, part in frame.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, group_key, strict=True))
        for metric in METRICS:
            s = statistics.spread(part[metric])
            row[metric] = _nan_if_none(s.mean)
            row[f"{metric}_sd"] = _nan_if_none(s.sd)
            row[f"{metric}_n"] = s.n
            row[f"{metric}_ci_low"] = _nan_if_none(s.ci_low)
            row[f"{metric}_ci_high"] = _nan_if_none(s.ci_high)
        row["n_splits"] = part["split"].nunique()
        row["n_seeds"] = part["seed"].nunique()
        row["n_runs"] = len(part)
        row["epoch_mean"] = part["epoch"].mean()
        row["protocol"] = ",".join(sorted(set(part["protocol"])))
        row["surrogate"] = bool(part["surrogate"].any())
        rows.append(row)
    return pd.DataFrame(rows)


def row_spread(row: Mapping[str, Any], metric: str) -> statistics.Spread:
    """The :class:`~csta_lib.runs.statistics.Spread` of ``metric`` in a :func:`summary_table` row."""

    def value(name: str) -> float | None:
        v = row[f"{metric}{name}"]
        return None if v is None or math.isnan(float(v)) else float(v)

    return statistics.Spread(value(""), value("_sd"), int(row[f"{metric}_n"]), value("_ci_low"), value("_ci_high"))


def summary_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The :func:`summary_table` as JSON-ready rows: ``dataset``, ``variant``, ``policy``, ``protocol``,
    ``surrogate``, the counts, and per metric (``tau``, ``rho``, ``f1``) ``{"mean", "std", "n", "ci_low",
    "ci_high"}`` (``ci_*`` None with fewer than two runs)."""
    out = []
    for row in summary_table(frame).to_dict("records") if not frame.empty else []:
        entry: dict[str, Any] = {name: row[name] for name in GROUP}
        entry.update(protocol=row["protocol"], surrogate=bool(row["surrogate"]), n_runs=int(row["n_runs"]),
                     n_splits=int(row["n_splits"]), n_seeds=int(row["n_seeds"]),
                     epoch_mean=_none_if_nan(row["epoch_mean"]))
        for metric in METRICS:
            entry[metric] = row_spread(row, metric).as_dict()
        out.append(entry)
    return out


def _none_if_nan(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def run_values(frame: pd.DataFrame, dataset: str, variant: str, policy: str, metric: str) -> dict[tuple, float]:
    """``{(split, seed): value}`` of one row (dataset, variant, policy) of a :func:`results_frame`: the values that
    :func:`paired_table` pairs."""
    part = frame[(frame["dataset"] == dataset) & (frame["variant"] == variant) & (frame["policy"] == policy)]
    return {tuple(int(v) for v in key): float(value)
            for key, value in zip(part[PAIR_KEY].itertuples(index=False, name=None), part[metric], strict=True)}


def paired_table(frame: pd.DataFrame, comparisons: Sequence[tuple[tuple[str, str], tuple[str, str]]],
                 metrics: Sequence[str] = ("tau", "rho")) -> pd.DataFrame:
    """Paired differences ``a − b`` over the runs two rows share (same dataset, fold and seed).

    ``comparisons`` are ``((variant_a, policy_a), (variant_b, policy_b))``; one output row per (dataset,
    comparison, metric) where both rows have runs: ``n`` pairs, ``mean`` difference, ``sd``, ``ci_low`` /
    ``ci_high`` (95 % t interval, NaN with fewer than two pairs), ``n_only_a`` / ``n_only_b`` (runs without a
    partner), ``n_undefined`` (pairs with a NaN) and ``reading`` (:func:`csta_lib.runs.statistics.paired_reading`).
    """
    import pandas as pd  # lazily, as in results_frame

    rows = []
    for dataset in sorted(set(frame["dataset"])):
        for (variant_a, policy_a), (variant_b, policy_b) in comparisons:
            for metric in metrics:
                a = run_values(frame, dataset, variant_a, policy_a, metric)
                b = run_values(frame, dataset, variant_b, policy_b, metric)
                if not a or not b:
                    continue
                paired = statistics.paired_difference(a, b)
                d = paired.difference
                rows.append({"dataset": dataset, "variant_a": variant_a, "policy_a": policy_a,
                             "variant_b": variant_b, "policy_b": policy_b, "metric": metric, "n": d.n,
                             "mean": _nan_if_none(d.mean), "sd": _nan_if_none(d.sd),
                             "ci_low": _nan_if_none(d.ci_low), "ci_high": _nan_if_none(d.ci_high),
                             "n_only_a": paired.n_only_a, "n_only_b": paired.n_only_b,
                             "n_undefined": d.n_undefined, "reading": paired.reading})
    columns = ["dataset", "variant_a", "policy_a", "variant_b", "policy_b", "metric", "n", "mean", "sd", "ci_low",
               "ci_high", "n_only_a", "n_only_b", "n_undefined", "reading"]
    return pd.DataFrame(rows, columns=columns)


def table_header(frame: pd.DataFrame) -> str:
    """One line per (dataset, policy) saying the τ/ρ protocol, the selection policy and the data provenance."""
    lines = []
    for (dataset, policy), part in frame.groupby(["dataset", "policy"], sort=True):
        protocols = ",".join(sorted(set(part["protocol"])))
        features = ("SURROGATE features (synthetic, not the paper's data)" if part["surrogate"].any() else
                    "a user dataset (csta data build: your videos and annotations, not the paper's data)"
                    if part["user_dataset"].any() else "real features")
        lines.append(f"{dataset}: tau/rho protocol {protocols}; selection {POLICY_LABELS.get(policy, policy)}; "
                     f"{features}")
    return "\n".join(lines)


def _fmt(value: float, digits: int = 3) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    return _fmt(mean) if std is None or math.isnan(std) else f"{_fmt(mean)} ± {_fmt(std)}"


def _runs_text(n_runs: int, n_splits: int, n_seeds: int) -> str:
    """``"6 (2 folds x 3 seeds)"``."""
    return f"{n_runs} ({n_splits} fold{'s' if n_splits != 1 else ''} x {n_seeds} seed{'s' if n_seeds != 1 else ''})"


def render_table(frame: pd.DataFrame, *, per_split: bool = False, fmt: str = "markdown") -> str:
    """A printable table of a :func:`results_frame`: the summary (default) or one row per split.

    ``fmt`` is ``markdown`` (a pipe table), ``text`` (aligned columns) or ``csv``. The header lines state the
    protocol, selection policy and whether features were surrogate; the summary gives per metric the mean over
    runs, the sd over runs and the 95 % t interval (:data:`SPREAD_NOTE`).
    """
    if fmt not in ("markdown", "text", "csv"):
        raise CstaInputError(f"unknown table format {fmt!r}; use markdown, text or csv")
    if frame.empty:
        return "(no runs)"
    if per_split:
        table = split_table(frame)
        columns = ["dataset", "variant", "policy", "split", "n_seeds", "epoch_mean", "tau", "rho", "f1"]
        body = [
            [str(r.dataset), str(r.variant), str(r.policy), str(r.split), str(r.n_seeds), _fmt(r.epoch_mean, 1),
             _pm(r.tau, r.tau_std_seeds), _pm(r.rho, r.rho_std_seeds), _pm(r.f1, r.f1_std_seeds)]
            for r in table.itertuples()
        ]
        note = "per split: mean ± std over seeds"
    else:
        table = summary_table(frame)
        columns = ["dataset", "variant", "policy", "runs", "epoch_mean"]
        for metric in METRICS:
            columns += [metric, f"{metric} sd", f"{metric} 95% CI"]
        body = []
        for r in table.to_dict("records"):
            cells = [str(r["dataset"]), str(r["variant"]), str(r["policy"]),
                     _runs_text(r["n_runs"], r["n_splits"], r["n_seeds"]), _fmt(r["epoch_mean"], 1)]
            for metric in METRICS:
                s = row_spread(r, metric)
                cells += [statistics.number_text(s.mean), statistics.number_text(s.sd), statistics.interval_text(s)]
            body.append(cells)
        note = SPREAD_NOTE
    if fmt == "csv":
        return table.to_csv(index=False)
    header = table_header(frame) + "\n" + note
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in body]
    return header + "\n\n" + "\n".join(lines)


def records_table(
    records: Sequence[Mapping[str, Any]],
    *,
    policies: Sequence[str] = POLICIES,
    per_split: bool = False,
    fmt: str = "markdown",
) -> str:
    """Render records directly (what ``csta results table`` and the grid's ``--experiment`` print)."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise CstaInputError(f"unknown selection policy {unknown[0]!r}; known: {', '.join(POLICIES)}")
    return render_table(results_frame(records, policies), per_split=per_split, fmt=fmt)
