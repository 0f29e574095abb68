"""``csta evaluate``: score a predictions file against a dataset under a rank-correlation protocol."""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from csta_lib.data import check_dataset, load_eccv16, load_splits
from csta_lib.data.eccv16 import FRAME_STEP, h5_member
from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError, first_line
from csta_lib.evaluation import SUMMARY_BUDGET, aggregate_splits, check_protocol, mean_metrics
from csta_lib.runs.io import check_outputs, write_json_atomic
from csta_lib.runs.locator import dataset_evaluator, official_splits
from csta_lib.runs.surrogate import resolve_features

PROTOCOL_HELP = (f"csta_summe: {SUMMARY_BUDGET * 100:g}%% knapsack summary vs the mean user summary (CSTA's SumMe "
                 f"protocol); casum_tvsum: {FRAME_STEP}-frame-step scores vs each annotator's [::{FRAME_STEP}] "
                 "scores, averaged (CSTA's TVSum "
                 "protocol); otani: frame-level scores vs each annotator (Otani et al. 2019). "
                 "Default: the paper's protocol for the dataset")


def register(subparsers: Any) -> None:
    """Add ``csta evaluate``."""
    p = subparsers.add_parser(
        "evaluate", help="τ, ρ and F1 of predicted step scores against a dataset",
        description=f"Score PREDICTIONS (an .h5 or .npz file holding one 1-D array of {FRAME_STEP}-frame step scores "
        "per video key, e.g. video_1; in an .h5 a key may also be a group with a 'scores' dataset) "
        "against the annotations of a dataset under a named rank-correlation protocol. Prints one "
        "row per video and one per split (mean over its test videos) and the mean over splits, as "
        "the paper aggregates; undefined τ/ρ (constant scores) are shown as nan and counted.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help="predictions file (.h5/.hdf5 or .npz)")
    p.add_argument("--data", metavar="H5", default=None,
                   help="eccv16-layout dataset file (default: the real file of --dataset if located, "
                   "else its cached surrogate)")
    p.add_argument("--dataset", choices=("summe", "tvsum"), default=None,
                   help="which dataset (required without --data; read from the file otherwise)")
    p.add_argument("--protocol", default=None, help=PROTOCOL_HELP)
    p.add_argument("--splits-file", default=None,
                   help="split file of any family (CSTA .txt, PGL-SUM/VASNet/MSVA .json, DSNet .yml); "
                   "with --split and no file, CSTA's official splits are used")
    p.add_argument("--split", type=int, default=None, metavar="K",
                   help="evaluate only split K (0-based, as the split files number them and as `csta train --split`)")
    p.add_argument("--budget", type=float, default=SUMMARY_BUDGET,
                   help=f"summary length as a fraction of the video ({SUMMARY_BUDGET:g})")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of tables")
    p.add_argument("--out", default=None, metavar="PATH", help="also write the JSON result to PATH (atomically)")
    p.set_defaults(func=cmd_evaluate)


#: The most steps one video's predictions may declare (15-frame steps: ten million is about 58 days of video);
#: checked from the file's header before anything is read, so a file declaring 10**12 values is refused.
MAX_PREDICTION_STEPS = 10_000_000


def _check_declared(path: Path, key: str, shape: tuple[int, ...], dtype: Any) -> None:
    """Shape and type of one video's scores, checked before its values are read."""
    if len(shape) != 1:
        raise DataFormatError(f"{path}: {key}: scores must be one-dimensional, got shape {tuple(shape)}")
    if np.dtype(dtype).kind not in "iuf":
        raise DataFormatError(f"{path}: {key}: scores must be real numbers, got dtype {np.dtype(dtype)}")
    if shape[0] > MAX_PREDICTION_STEPS:
        raise DataFormatError(f"{path}: {key}: declares {shape[0]:,} scores, more than the {MAX_PREDICTION_STEPS:,} "
                              "steps any video has; refusing to read it")


def _npz_predictions(path: Path) -> dict[str, Any]:
    """Arrays of an .npz file, each header checked before its data is read (no pickles)."""
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                key = member[:-4] if member.endswith(".npy") else member
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(fh)
                    _check_declared(path, key, shape, dtype)
                    out[key] = np.lib.format.read_array(archive.open(member), allow_pickle=False)
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        first = first_line(exc)
        raise DataFormatError(f"{path}: not a readable .npz file ({first})") from None
    return out


def _h5_predictions(path: Path) -> dict[str, Any]:
    """Arrays of an HDF5 predictions file (broken links and oversized declarations refused before reading)."""
    if not h5py.is_hdf5(path):
        raise DataFormatError(f"{path}: not an HDF5 or .npz predictions file")
    out: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as h5:
            for key in h5:
                item = h5_member(h5, key, f"{path}: {key}")
                if isinstance(item, h5py.Group):
                    if "scores" not in item:
                        raise DataFormatError(f"{path}: group {key!r} has no 'scores' dataset")
                    item = h5_member(item, "scores", f"{path}: {key}/scores")
                    if isinstance(item, h5py.Group):
                        raise DataFormatError(f"{path}: {key}/scores is a group, not a dataset")
                if item.shape is None:
                    raise DataFormatError(f"{path}: {key}: empty dataspace, not an array of scores")
                _check_declared(path, key, item.shape, item.dtype)
                out[key] = np.asarray(item[()])
    except DataFormatError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        first = first_line(exc)
        raise DataFormatError(f"{path}: cannot read the predictions ({first})") from None
    return out


def load_predictions(path: str | Path) -> dict[str, Any]:
    """``{video key: 1-D array of real numbers}`` from an .npz or HDF5 predictions file."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except OSError:  # a name too long, ...
        is_file = False
    if not is_file:
        raise MissingDataError(f"{path}: no such predictions file")
    out = _npz_predictions(path) if path.suffix == ".npz" else _h5_predictions(path)
    if not out:
        raise DataFormatError(f"{path}: no predictions in the file")
    for key, arr in out.items():
        _check_declared(path, key, arr.shape, arr.dtype)
    return {key: np.asarray(arr) for key, arr in out.items()}


def evaluate_predictions(predictions: dict[str, Any], dataset: Any, protocol: str | None = None,
                         splits: list[Any] | None = None, budget: float = SUMMARY_BUDGET,
                         tvsum_annotations: Any = None) -> dict[str, Any]:
    """Per-video, per-split and overall results (JSON-able) of ``predictions`` on ``dataset``.

    With ``splits``, each split is the mean over its test videos and the overall number the mean
    over splits (book method page, method-metrics); without, the overall number is the mean over the videos.
    """
    unknown = [k for k in predictions if k not in dataset]
    if unknown:
        raise CstaInputError(f"predictions for videos not in {dataset.path}: {', '.join(sorted(unknown)[:5])}")
    evaluator = dataset_evaluator(dataset, tvsum_annotations=tvsum_annotations, protocol=protocol, budget=budget)
    keys = [k for k in dataset if k in predictions]
    split_rows = []
    if splits:
        wanted = [k for s in splits for k in s.test_keys]
        missing = [k for k in wanted if k not in predictions]
        if missing:
            raise CstaInputError(f"no predictions for test videos {', '.join(missing[:5])}"
                                 + (" ..." if len(missing) > 5 else ""))
        keys = [k for k in dataset if k in set(wanted)]
    videos = evaluator.evaluate(predictions, keys)
    if splits:
        for s in splits:
            m = mean_metrics({k: videos[k] for k in s.test_keys}, evaluator.protocol)
            split_rows.append({"split": s.index, "source": s.source, "test_keys": list(s.test_keys), **m})
        overall = aggregate_splits(split_rows)
    else:
        overall = mean_metrics(videos, evaluator.protocol)
    return {"protocol": evaluator.protocol, "dataset": evaluator.dataset, "data": str(dataset.path),
            "features": dataset.label, "is_surrogate": bool(dataset.is_surrogate), "budget": budget,
            "f1_aggregation": evaluator.f1_aggregation, "videos": videos, "splits": split_rows,
            "overall": overall}


def _fmt(x: Any) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def format_tables(result: dict[str, Any]) -> str:
    """The human-readable tables of :func:`evaluate_predictions`."""
    lines = [f"# {result['dataset']} | protocol {result['protocol']} | {result['features']}"
             + (" (SURROGATE: not comparable to the paper)" if result["is_surrogate"] else ""),
             f"# F1 = {result['f1_aggregation']} over users, budget {result['budget']:.0%}",
             f"{'video':<10} {'tau':>8} {'rho':>8} {'F1':>8}"]
    for key, r in result["videos"].items():
        lines.append(f"{key:<10} {_fmt(r['tau']):>8} {_fmt(r['rho']):>8} {_fmt(r['f1']):>8}")
    if result["splits"]:
        lines += ["", f"{'split':<10} {'videos':>6} {'tau':>8} {'rho':>8} {'F1':>8} {'nan tau/rho':>12}"]
        for s in result["splits"]:
            nan_counts = f"{s['n_nan_tau']}/{s['n_nan_rho']}"
            lines.append(f"{'split' + str(s['split']):<10} {s['n_videos']:>6} {_fmt(s['tau']):>8} "
                         f"{_fmt(s['rho']):>8} {_fmt(s['f1']):>8} {nan_counts:>12}")
    o = result["overall"]
    how = f"mean over {o['n_splits']} splits" if result["splits"] else f"mean over {o['n_videos']} videos"
    lines += ["", f"{how}: tau {_fmt(o['tau'])}  rho {_fmt(o['rho'])}  F1 {_fmt(o['f1'])}"
              f"  (undefined: tau {o['n_nan_tau']}, rho {o['n_nan_rho']})"]
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.protocol is not None:
        check_protocol(args.protocol)
    if not 0.0 <= args.budget <= 1.0:
        raise CstaInputError(f"--budget must be in [0, 1], got {args.budget}")
    if args.data is None and args.dataset is None:
        raise CstaInputError("give --data H5 or --dataset summe|tvsum")
    inputs = {args.predictions: "PREDICTIONS", args.data: "--data", args.splits_file: "--splits-file"}
    if args.out:  # never write over an input (by path, link or inode), checked before any work
        check_outputs({args.out: "--out"}, inputs)
    predictions = load_predictions(args.predictions)
    if args.data is not None:
        if not Path(args.data).is_file():
            raise CstaInputError(f"{args.data}: no such dataset file")
        dataset = load_eccv16(args.data, dataset=args.dataset)
    else:
        dataset = load_eccv16(resolve_features(check_dataset(args.dataset)), dataset=args.dataset)
    splits = None
    if args.splits_file is not None:
        splits = load_splits(args.splits_file, dataset.dataset)
    elif args.split is not None:
        if dataset.is_user:
            raise CstaInputError(f"--split: the user dataset {dataset.dataset} has no official splits; pass its "
                                 "--splits-file (`csta data split` makes one)")
        splits = official_splits(dataset.dataset)
    if splits is not None and args.split is not None:
        if not 0 <= args.split < len(splits):
            raise CstaInputError(f"--split {args.split}: the split file has splits 0..{len(splits) - 1}")
        splits = [splits[args.split]]
    if args.out:  # the located dataset file is an input too
        check_outputs({args.out: "--out"}, {**inputs, dataset.path: "dataset"})
    result = evaluate_predictions(predictions, dataset, args.protocol, splits, args.budget)
    if args.out:
        write_json_atomic(args.out, result)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_tables(result))
    return 0
