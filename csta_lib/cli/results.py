"""``csta results``: tables from the results store.

``csta results table --store DIR [--experiment NAME --profile P] [--dataset D] [--preset P] [--variant V]
[--splits LIST] [--seeds LIST] [--epochs E] [--select POLICIES] [--per-split] [--format markdown|text|csv]
[--json]`` prints per (dataset, variant, selection policy) the mean over runs (folds × seeds), the sd over runs and
the 95 % t interval of τ, ρ and F1 (or one row per split), with the τ/ρ protocol, the selection policy and the
data provenance in the header; ``--json`` prints the same as ``{"rows": [...]}``, each row carrying ``mean``,
``std``, ``n``, ``ci_low``, ``ci_high`` per coefficient (``ci_*`` null with one run). ``--experiment NAME
--profile P`` restricts the table to the runs of that experiment grid.

``csta results compare --experiment table1 [--profile P] [--store DIR] [--select POLICY] [--json]``: the distance
to the paper, per dataset and coefficient: this build's mean and 95 % interval, the paper's value, a public
retrain's, and whether the paper's value lies inside the interval (null on surrogate features, which compare
nothing with the paper).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from csta_lib.data.eccv16 import check_dataset_name, load_eccv16
from csta_lib.errors import CstaInputError
from csta_lib.runs import statistics, store

#: The experiments ``csta results compare`` knows the paper's values of.
COMPARABLE_EXPERIMENTS = ("table1",)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``results`` command group."""
    p = subparsers.add_parser("results", help="tables from the results store",
                              description="Tables built from the run records of a results store.")
    sub = p.add_subparsers(dest="results_command", metavar="SUBCOMMAND")
    t = sub.add_parser(
        "table", help="mean, sd and 95%% interval over runs (or per split) of stored runs",
        description="Aggregate stored run records into a table: per (dataset, model variant, selection policy) "
                    "the mean over runs (folds x seeds) of tau, rho and F1, the standard deviation over runs and "
                    "the 95% t interval of the mean (none with one run). The header names the tau/rho protocol, "
                    "the selection policy and whether the features were surrogate.")
    t.add_argument("--store", default=None, metavar="DIR", help="results store directory (default results/store)")
    t.add_argument("--dataset", help="only this dataset: summe, tvsum or a user dataset's name (csta data build)")
    t.add_argument("--data", metavar="H5", help="only the runs on this data file (e.g. a file csta data build made)")
    t.add_argument("--preset", action="append", help="only this preset (repeatable)")
    t.add_argument("--variant", action="append", help="only this variant, e.g. paper+skip_norm=layernorm (repeatable)")
    t.add_argument("--splits", metavar="LIST", help="only these splits (0-based), e.g. 0-2")
    t.add_argument("--seeds", metavar="LIST", help="only these seeds, e.g. 0-4")
    t.add_argument("--epochs", type=int, help="only runs of this many epochs")
    _experiment_arguments(t, "only the runs of this experiment (table1, table2, fig4, deviations): with --profile "
                             "exactly that grid's runs, else the stored runs of its variants with the most epochs")
    t.add_argument("--select", default="test-max,val,last",
                   help="selection policies to show, comma-separated (default test-max,val,last; test-max "
                        "selects on the test split, as the official code)")
    t.add_argument("--per-split", action="store_true", help="one row per split (mean ± std over seeds)")
    t.add_argument("--format", dest="fmt", choices=["markdown", "text", "csv"], default="markdown",
                   help="table format (default markdown)")
    t.add_argument("--json", action="store_true",
                   help="print {\"rows\": [...]} instead of a table: per row dataset, variant, policy, protocol, "
                        "surrogate, counts, and per coefficient (tau, rho, f1) mean, std, n, ci_low, ci_high")
    t.set_defaults(func=table_command)
    c = sub.add_parser(
        "compare", help="distance to the paper: stored mean and 95%% interval beside the paper's value",
        description="Per dataset and coefficient: the stored runs' mean, sd and 95% t interval under one "
                    "selection policy (default test-max, the paper's), the paper's Table 1 value, a public retrain "
                    "of the official code (CSTA GitHub issue #4) and whether the paper's value lies inside the "
                    "interval. Runs on surrogate features compare nothing with the paper (paper_inside_ci null).")
    c.add_argument("--store", default=None, metavar="DIR", help="results store directory (default results/store)")
    _experiment_arguments(c, f"the experiment to compare ({', '.join(COMPARABLE_EXPERIMENTS)})", required=True)
    c.add_argument("--select", default="test-max", metavar="POLICY",
                   help="the selection policy compared (default test-max, what the paper reports)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON ({\"rows\": [...], ...})")
    c.set_defaults(func=compare_command)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _experiment_arguments(parser: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    parser.add_argument("--experiment", metavar="NAME", required=required, help=help_text)
    parser.add_argument("--profile", default=None, help="profile of --experiment: smoke, quick or paper")


def policies_of(text: str) -> list[str]:
    """``"test-max,val"`` → a checked list of selection policies (``--select`` of ``results`` and ``train``)."""
    policies = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in policies if p not in store.POLICIES]
    if unknown or not policies:
        raise CstaInputError(f"--select: unknown policy {unknown[0] if unknown else '(none)'!r}; "
                             f"choose from {','.join(store.POLICIES)}")
    return policies


def _experiment_keys(args: argparse.Namespace, store_dir: Any) -> set[str] | None:
    """The content addresses of ``--experiment`` (at ``--profile``) in the store, or None without --experiment."""
    # here, not at the top: torch (start-up of --help)
    from csta_lib.runs import grid

    if args.profile and not args.experiment:
        raise CstaInputError("--profile needs --experiment")
    if not args.experiment:
        return None
    return {r["key"] for r in grid.stored_experiment_records(args.experiment, store_dir, args.profile)}


def table_command(args: argparse.Namespace) -> int:
    """Run ``csta results table``."""
    from csta_lib.runs.training import parse_int_list  # here, not at the top: torch (start-up of --help)

    store_dir = args.store or store.DEFAULT_STORE_DIR
    records = store.load_records(
        store_dir,
        keys=_experiment_keys(args, store_dir),
        dataset=check_dataset_name(args.dataset) if args.dataset else None,
        data_sha256=load_eccv16(args.data).sha256 if args.data else None,
        preset=args.preset,
        variant=args.variant,
        splits=parse_int_list(args.splits, name="--splits") if args.splits else None,
        seeds=parse_int_list(args.seeds, name="--seeds") if args.seeds else None,
        epochs=args.epochs,
    )
    policies = policies_of(args.select)
    if args.json:
        if args.per_split:
            raise CstaInputError("--json prints the summary rows; leave out --per-split")
        rows = store.summary_rows(store.results_frame(records, policies))
        print(json.dumps({"experiment": args.experiment, "profile": args.profile,
                          "interval": store.SPREAD_NOTE, "rows": rows}, indent=1))
        return 0
    print(store.records_table(records, policies=policies, per_split=args.per_split, fmt=args.fmt))
    return 0


def _cell(value: Any, digits: int = 3) -> str:
    """A comparison value for reading: a number with ``digits`` decimals, yes / no, or – when undefined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return statistics.number_text(value, digits)


def compare_text(comparison: dict[str, Any]) -> str:
    """The comparison as a markdown table; on surrogate rows the paper's columns say "not compared"."""
    columns = ["dataset", "coefficient", "n", "mean", "sd", "95% CI", "paper", "public retrain", "paper inside CI",
               "(paper - mean)/sd"]
    lines = [f"distance to the paper: {comparison['experiment']}, {comparison['policy']} selection; "
             f"{comparison['interval']}",
             f"paper: {comparison['paper_source']}; public retrain: {comparison['public_retrain_source']}",
             f"note: {comparison['note']}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in comparison["rows"]:
        interval = statistics.interval_text(statistics.Spread(r["mean"], r["std"], r["n"], r["ci_low"], r["ci_high"]))
        if r["surrogate"]:
            paper_cells = ["not compared (surrogate)"] * 4
        else:
            paper_cells = [_cell(r["paper"]), _cell(r["public_retrain"]), _cell(r["paper_inside_ci"]),
                           _cell(r["paper_distance_sd"], 1)]
        cells = [r["dataset"], r["coefficient"], str(r["n"]), _cell(r["mean"]), _cell(r["std"]), interval,
                 *paper_cells]
        lines.append("| " + " | ".join(cells) + " |")
    if not comparison["rows"]:
        lines.append("(no runs)")
    return "\n".join(lines)


def compare_command(args: argparse.Namespace) -> int:
    """Run ``csta results compare``."""
    # here, not at the top: torch and pandas (start-up of --help)
    from csta_lib.book.results import paper_comparison

    if args.experiment not in COMPARABLE_EXPERIMENTS:
        raise CstaInputError(f"--experiment {args.experiment!r}: compare knows the paper's values of "
                             f"{', '.join(COMPARABLE_EXPERIMENTS)} only")
    policies = policies_of(args.select)
    if len(policies) != 1:
        raise CstaInputError(f"--select {args.select!r}: compare takes one policy")
    store_dir = args.store or store.DEFAULT_STORE_DIR
    records = store.load_records(store_dir, keys=_experiment_keys(args, store_dir))
    comparison = paper_comparison(records, policies[0])
    comparison["profile"] = args.profile
    print(json.dumps(comparison, indent=1) if args.json else compare_text(comparison))
    return 0
