"""``csta train``: train CSTA runs with the paper's protocol and store their records.

Two forms::

    csta train --preset paper --dataset summe --splits all --seeds 0-4 --epochs 100 --select test-max,val,last
    csta train --preset P --data H5_FILE --splits-file SPLITS_FILE --split K --seed S --epochs E --store DIR

Each run prints its record path; the last line of standard output is the last run's record path.
"""

from __future__ import annotations

import argparse
import dataclasses

from csta_lib.cli.results import policies_of
from csta_lib.config import PRESETS
from csta_lib.errors import CstaInputError, first_line
from csta_lib.runs import store
from csta_lib.runs.io import check_output_dir

DESCRIPTION = """\
Train CSTA as the official code does (Adam lr 1e-3, weight decay 1e-7 as L2, MSE against gtscore, one video
per step, shuffled; a fresh model per split) and write one JSON record per run into the results store
(content-addressed: a run that is already stored is not recomputed; use --force to retrain).

Every run evaluates the test videos (and a validation subset) after each epoch and reports three model
selections from the same run: test-max (the official rule, selects ON THE TEST SPLIT: the last epoch where
mean tau and rho both improved), val (the same rule on a validation subset of the training videos) and last.
With the val policy the model trains on the training videos minus that subset (--val-fraction, default 0.2);
--select test-max,last with --val-fraction 0 trains on exactly the official training set.

Data: --dataset uses the real eccv16 file when the data locator finds it, else a cached surrogate (labelled
in the record); --data uses any eccv16-layout h5 file. Splits: the official CSTA 5-fold splits unless
--splits-file is given; split indices are 0-based.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    p = subparsers.add_parser("train", help="train runs (preset x dataset x splits x seeds) into the results store",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="paper", help="model preset (see `csta model list`; default paper)")
    model.add_argument("--set", dest="overrides", action="append", default=[], metavar="SWITCH=VALUE",
                       help="change one ModelConfig switch of the preset, e.g. --set skip_norm=layernorm "
                            "(repeatable; VALUE: a number, true/false, a word or none; a value equal to the "
                            "preset's changes nothing and is dropped)")
    model.add_argument("--cnn-weights", default="auto",
                       help="CNN trunk init: auto (ImageNet file if found, else random init; default), imagenet "
                            "(required), none (random), or a weight file / data name")
    model.add_argument("--init-from", metavar="CHECKPOINT",
                       help="start from a csta checkpoint's weights (must be of the same model config)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["summe", "tvsum"],
                      help="dataset (optional with --data / --splits-file, which name it)")
    data.add_argument("--data", metavar="H5_FILE", help="eccv16-layout feature file (overrides the data locator)")
    data.add_argument("--splits-file", metavar="SPLITS_FILE",
                      help="split file of any family (CSTA .txt, PGL-SUM/VASNet/MSVA .json, DSNet .yml); "
                           "default: the official CSTA splits")
    which = data.add_mutually_exclusive_group()
    which.add_argument("--split", type=int, metavar="K", help="one split, 0-based")
    which.add_argument("--splits", default=None, metavar="LIST", help="splits: all (default), 0-4 or 0,2")
    runs = p.add_argument_group("runs")
    seeds = runs.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, metavar="S", help="one seed")
    seeds.add_argument("--seeds", default=None, metavar="LIST", help="seeds: 0-4 or 0,3 (default 0)")
    runs.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the paper's 100)")
    runs.add_argument("--select", default="test-max,val,last",
                      help="selection policies, comma-separated from test-max,val,last (default: all three)")
    runs.add_argument("--val-fraction", type=float, default=None,
                      help="share of the training videos held out for the val policy (default 0.2 when val is "
                           "selected, else 0)")
    runs.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the paper's 1e-3)")
    runs.add_argument("--weight-decay", type=float, default=None,
                      help="Adam weight decay, coupled L2 (default: the paper's 1e-7)")
    runs.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    runs.add_argument("--numerics", default="exact",
                      help="floating-point settings, part of each run's content key: exact (default; IEEE float32, "
                           "deterministic cuDNN and cuBLAS on CUDA) or fast (the same with TF32 matrix products "
                           "and convolutions on Ampere or newer GPUs: faster, further from the official numbers)")
    runs.add_argument("--resume-every", type=int, default=5, metavar="N",
                      help="epochs between resume snapshots (model, optimizer, RNG states; default 5): an "
                           "interrupted run resumes from the last one with an identical result")
    out = p.add_argument_group("output")
    out.add_argument("--store", default=None, metavar="DIR", help="results store directory (default results/store)")
    out.add_argument("--force", action="store_true", help="retrain even if the run is already stored")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def _parse_value(item: str, text: str) -> object:
    """The value of ``--set SWITCH=TEXT``: a number, true/false, a word or none (plain YAML scalars only)."""
    if text in ("None", "none", ""):
        return None
    import yaml  # here, not at the top: an optional extra ([book]) that only --set needs

    try:
        value = yaml.safe_load(text)  # safe_load: a tag such as !!python/object is refused, never run
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise CstaInputError(f"--set {item!r}: {text!r} is not a plain value ({problem}); give a number, "
                             "true/false, a word or none") from None
    if not isinstance(value, (str, int, float, bool, type(None))):
        raise CstaInputError(f"--set {item!r}: {text!r} is a YAML {type(value).__name__}; give a number, true/false, "
                             "a word or none")
    return value


def _parse_overrides(items: list[str], preset: str | None = None) -> tuple[tuple[str, object], ...]:
    """``["skip_norm=layernorm", "attention_dropout_rate=0.5"]`` → typed (switch, value) pairs, normalised against
    the preset: a repeated switch keeps its last value, a number given for a float switch becomes a float, and a
    value equal to the preset's is dropped, so that the run's variant (and its key) are the preset's own."""
    pairs: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CstaInputError(f"--set {item!r}: expected SWITCH=VALUE")
        pairs[name] = _parse_value(item, text)
    base = PRESETS.get(preset) if preset is not None else None
    if base is None:  # an unknown preset: its error comes when the run is prepared
        return tuple(pairs.items())
    normalised = []
    for name, value in pairs.items():
        if not hasattr(base, name):
            normalised.append((name, value))  # an unknown switch: the run's preparation names the known ones
            continue
        default = getattr(base, name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if base.replace(**{name: value}) != base:  # validated: a bad value is one clear error here
            normalised.append((name, value))
    return tuple(normalised)


def build_specs(args: argparse.Namespace) -> list:
    """The RunSpecs an invocation asks for (splits × seeds), validated before anything trains."""
    # here, not at the top: torch (start-up of --help)
    from csta_lib.runs import training
    from csta_lib.runs.spec import RunSpec
    from csta_lib.train import PAPER_EPOCHS, PAPER_LR, PAPER_WEIGHT_DECAY

    epochs = PAPER_EPOCHS if args.epochs is None else args.epochs
    policies = tuple(policies_of(args.select))
    if epochs <= 0:
        raise CstaInputError(f"--epochs must be a positive integer, got {epochs}")
    seeds = [args.seed] if args.seed is not None else training.parse_int_list(args.seeds or "0", name="--seeds")
    base = RunSpec(
        preset=args.preset, dataset=args.dataset, data_path=args.data, splits_file=args.splits_file,
        epochs=epochs, policies=policies, val_fraction=args.val_fraction,
        lr=PAPER_LR if args.lr is None else args.lr,
        weight_decay=PAPER_WEIGHT_DECAY if args.weight_decay is None else args.weight_decay,
        device=args.device, numerics=args.numerics, resume_every=args.resume_every,
        cnn_weights=None if args.cnn_weights == "none" else args.cnn_weights, init_checkpoint=args.init_from,
        overrides=_parse_overrides(args.overrides, args.preset), seed=seeds[0],
    )
    if args.split is not None:
        splits = [args.split]
    else:
        n_splits = len(training.available_splits(base))
        splits = training.parse_int_list(args.splits or "all", name="--splits", all_values=range(n_splits))
    specs = [dataclasses.replace(base, split=k, seed=s) for k in splits for s in seeds]
    for spec in specs:  # every bad input fails here, before the first run trains
        training.prepare(spec)
    return specs


def _number(value: object) -> str:
    return "nan" if value is None else f"{value:.3f}"


def main(args: argparse.Namespace) -> int:
    """Run ``csta train``."""
    from csta_lib.runs import training  # here, not at the top: torch (start-up of --help)

    store_dir = args.store or store.DEFAULT_STORE_DIR
    check_output_dir(store_dir, "--store")  # creates nothing: folders appear with the first file a run writes
    specs = build_specs(args)
    for i, spec in enumerate(specs, 1):
        record = training.run(spec, store_dir, progress=not args.no_progress, force=args.force)
        chosen = ", ".join(f"{p} epoch {s.get('epoch')} tau {_number(s.get('test_tau'))} "
                           f"rho {_number(s.get('test_rho'))}" for p, s in record["selected"].items())
        provenance = record["provenance"]
        label = ("SURROGATE features" if provenance["surrogate"] else
                 f"user dataset, {provenance['encoder']} features" if provenance.get("user_dataset")
                 else "real features")
        print(f"[{i}/{len(specs)}] {record['dataset']} {record['variant']} split {spec.split} seed {spec.seed} "
              f"({label}): {chosen}")
        print(record["_path"])
    return 0
