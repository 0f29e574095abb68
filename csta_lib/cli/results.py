"""``csta results``: tables from the results store.

``csta results table --store DIR [--experiment NAME --profile P] [--dataset D] [--preset P] [--variant V]
[--splits LIST] [--seeds LIST] [--epochs E] [--select POLICIES] [--per-split] [--format markdown|text|csv]`` prints the mean ± std over splits
and seeds (or one row per split) with the τ/ρ protocol, the selection policy and the data provenance in the
header. ``--experiment NAME --profile P`` restricts the table to the runs of that experiment grid.
"""

from __future__ import annotations

import argparse

from csta_lib.errors import CstaInputError
from csta_lib.runs import store


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``results`` command group."""
    p = subparsers.add_parser("results", help="tables from the results store",
                              description="Tables built from the run records of a results store.")
    sub = p.add_subparsers(dest="results_command", metavar="SUBCOMMAND")
    t = sub.add_parser(
        "table", help="mean ± std over splits and seeds (or per split) of stored runs",
        description="Aggregate stored run records into a table: per (dataset, model variant, selection policy) "
                    "the mean over splits and seeds of tau, rho and F1, the std over seeds of the mean over "
                    "splits, and the std over splits. The header names the tau/rho protocol, the selection policy "
                    "and whether the features were surrogate.")
    t.add_argument("--store", default=None, metavar="DIR", help="results store directory (default results/store)")
    t.add_argument("--dataset", choices=["summe", "tvsum"], help="only this dataset")
    t.add_argument("--preset", action="append", help="only this preset (repeatable)")
    t.add_argument("--variant", action="append", help="only this variant, e.g. paper+skip_norm=layernorm (repeatable)")
    t.add_argument("--splits", metavar="LIST", help="only these splits (0-based), e.g. 0-2")
    t.add_argument("--seeds", metavar="LIST", help="only these seeds, e.g. 0-4")
    t.add_argument("--epochs", type=int, help="only runs of this many epochs")
    t.add_argument("--experiment", metavar="NAME",
                   help="only the runs of this experiment (table1, table2, fig4, deviations): with --profile exactly "
                        "that grid's runs, else the stored runs of its variants with the most epochs")
    t.add_argument("--profile", default=None, help="profile of --experiment: smoke, quick or paper")
    t.add_argument("--select", default="test-max,val,last",
                   help="selection policies to show, comma-separated (default test-max,val,last; test-max "
                        "selects on the test split, as the official code)")
    t.add_argument("--per-split", action="store_true", help="one row per split (mean ± std over seeds)")
    t.add_argument("--format", dest="fmt", choices=["markdown", "text", "csv"], default="markdown",
                   help="table format (default markdown)")
    t.set_defaults(func=table_command)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def policies_of(text: str) -> list[str]:
    """``"test-max,val"`` → a checked list of selection policies (``--select`` of ``results`` and ``train``)."""
    policies = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in policies if p not in store.POLICIES]
    if unknown or not policies:
        raise CstaInputError(f"--select: unknown policy {unknown[0] if unknown else '(none)'!r}; "
                             f"choose from {','.join(store.POLICIES)}")
    return policies


def table_command(args: argparse.Namespace) -> int:
    """Run ``csta results table``."""
    # here, not at the top: torch (start-up of --help)
    from csta_lib.runs import grid
    from csta_lib.runs.training import parse_int_list

    if args.profile and not args.experiment:
        raise CstaInputError("--profile needs --experiment")
    store_dir = args.store or store.DEFAULT_STORE_DIR
    keys = None
    if args.experiment:  # the grid knows which content addresses make up an experiment at a profile
        keys = {r["key"] for r in grid.stored_experiment_records(args.experiment, store_dir, args.profile)}
    records = store.load_records(
        store_dir,
        keys=keys,
        dataset=args.dataset,
        preset=args.preset,
        variant=args.variant,
        splits=parse_int_list(args.splits, name="--splits") if args.splits else None,
        seeds=parse_int_list(args.seeds, name="--seeds") if args.seeds else None,
        epochs=args.epochs,
    )
    print(store.records_table(records, policies=policies_of(args.select), per_split=args.per_split, fmt=args.fmt))
    return 0
