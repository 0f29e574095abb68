"""``csta grid``: run an experiment grid (the paper's protocol across presets, datasets, folds and seeds).

    csta grid --experiment table1 --profile quick --engine local [--jobs N] --store DIR
    csta grid --experiment table1 --profile paper --engine ray [--address HOST:PORT] [--gpus-per-run 0.25] --store DIR
    csta grid --list
    csta grid --experiment table1 --profile paper --plan [--json]     what would run, without running it

Progress goes to standard error; the last line of standard output is a JSON summary with at least ``runs``,
``computed``, ``reused`` and ``failed``. The exit code is 0 when every run is stored, 1 when some run failed
(rerunning the same command computes only the missing runs), 2 for bad input. ``--plan`` trains nothing: it
prints the runs and what they cost (a table and totals, or with ``--json`` one JSON object per run and, last, a
summary object with ``"summary": "plan"`` and the totals) and exits 0; the cost comes from per-step times measured
on this machine (a few seconds, once per machine; ``--calibrate`` measures again, ``--no-calibrate`` never does
and then says the times are assumed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from csta_lib.errors import CstaInputError, MissingDataError
from csta_lib.runs import store

if TYPE_CHECKING:  # the module imports torch: only for the type
    from csta_lib.runs.experiments import DataSource

DESCRIPTION = """\
Expand a named experiment into its training runs (model variant x dataset x fold x seed, sized by the
profile), skip every run whose record is already in the results store (content address), and train the rest.

Experiments: table1 (CSTA, Table 1), table2 (the seven ablation rows), fig4 (the four CNNs as direct score
predictors), deviations (CSTA as coded vs LayerNorm after the skip vs bilinear resizing).
Profiles: smoke (seconds, tiny surrogate data, for tests), quick (the book's default on a 2-core CPU: fold 0;
Table 1 2 epochs, SumMe 3 seeds, TVSum 1; the rest SumMe, 1 seed, 1 epoch), paper (5 folds x 100 epochs x 5 seeds,
both datasets: GPU or cluster work).
`csta grid --list` prints what each profile runs and cuts; `--plan` lists the runs of one grid (preset,
dataset, split, seed, epochs, validation hold-out, selection policies, whether already stored) and what they
cost, without running anything: per-step times of each model measured on this machine (once, cached in
.cache/grid-cost/), the CPU time, the wall time on N Ray nodes like this one, and on a GPU with k runs packed
on it when GPU figures are recorded (else "not measured").

Kinds of run: every experiment trains on all of a fold's training videos (the official protocol) and reports
test-max and last selection from those runs; Table 1's val row comes from separate runs that hold out 20 % of
the training videos for validation.

Engines: local runs in this process (--jobs 1) or in N worker processes; ray submits one Ray task per run to a
local Ray cluster started for the grid, or to the cluster at --address / $RAY_ADDRESS (start one with
`ray start --head`; workers join with `ray start --address HEAD:6379`). On GPUs --gpus-per-run 0.25 packs
four runs on one GPU (locally with --jobs 4; on Ray as fractional GPUs). Before submitting, a Ray grid refuses at
once, in one line, when no node can hold one run (--cpus-per-run, --gpus-per-run) or when a node cannot prepare
one (this project or its [ray] extra missing there, data missing, another content key).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``grid`` command."""
    p = subparsers.add_parser("grid", help="run an experiment grid (local processes or Ray) into the results store",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", help="table1, table2, fig4 or deviations")
    p.add_argument("--profile", default="quick", help="smoke, quick (default) or paper")
    p.add_argument("--engine", default="local", help="local (default) or ray")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time on this machine: local worker processes, or the share of cores per Ray "
                        "task on a local Ray cluster (default 1)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (HOST:PORT, ray://HOST:10001 or auto; default $RAY_ADDRESS, else a "
                        "local cluster limited to this machine's cores)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, metavar="F",
                   help="GPUs per run, e.g. 0.25 packs four runs on one GPU (default 0: CPU)")
    p.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                   help="CPU cores (torch threads) per run (default: this machine's cores / --jobs; 1 on a "
                        "joined Ray cluster)")
    p.add_argument("--device", default=None, help="training device (default: cuda with --gpus-per-run > 0, else cpu)")
    p.add_argument("--store", default=None, metavar="DIR", help="results store directory (default results/store)")
    p.add_argument("--data", metavar="H5", default=None,
                   help="run the experiment on your own dataset (a file `csta data build` made) instead of SumMe and "
                        "TVSum: the profile's folds (those the split file has), seeds and epochs; needs --splits-file")
    p.add_argument("--splits-file", metavar="SPLITS.txt", default=None,
                   help="with --data: its folds (`csta data split` makes them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-run lines")
    p.add_argument("--list", action="store_true", help="print every experiment and profile with what it cuts, and exit")
    p.add_argument("--plan", action="store_true",
                   help="print the runs the grid would execute (and which are already in the store), run nothing")
    p.add_argument("--json", action="store_true",
                   help="with --plan: one JSON object per run, one per line, then a summary object (the totals)")
    p.add_argument("--calibrate", action="store_true",
                   help="with --plan: measure this machine's per-step times again (default: measure once, then reuse)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="with --plan: never measure; models not measured here before get an assumed rate (said so)")
    p.set_defaults(func=main)


def list_text() -> str:
    """Every (experiment, profile) with its size and cuts, and the rough CPU time of the quick profile."""
    from csta_lib.runs import experiments  # here, not at the top: torch (start-up of --help)

    lines = []
    for profile in experiments.PROFILES:
        lines.append(f"profile {profile}: {experiments.PROFILE_NOTES[profile]}")
        for name in experiments.EXPERIMENTS:
            lines.append(f"  {name}: {experiments.describe(name, profile)}")
    names = list(experiments.EXPERIMENTS)
    seconds = experiments.estimate_profile_seconds(names, "quick")
    lines.append(f"quick profile, all experiments: {experiments.unique_runs(names, 'quick')} distinct runs, about "
                 f"{seconds / 60:.0f} CPU minutes on a 2-core machine (at an assumed rate; `csta grid --plan` "
                 "measures this machine)")
    return "\n".join(lines)


def plan_text(entries: list[dict], summary: dict, experiment: str, profile: str,
              user: DataSource | None = None) -> str:
    """``--plan`` without ``--json``: one line per run, then the totals and what they cost."""
    from csta_lib.runs import cost, experiments  # here, not at the top: torch (start-up of --help)

    columns = [("label", "row"), ("variant", "variant"), ("dataset", "dataset"), ("split", "split"),
               ("seed", "seed"), ("epochs", "epochs"), ("val_fraction", "val"), ("policies", "policies"),
               ("n_train", "train videos"), ("n_val", "val videos"), ("n_test", "test videos"),
               ("in_store", "stored")]

    def cell(entry: dict, key: str) -> str:
        value = entry.get(key, "")
        if key == "policies":
            return ",".join(value)
        if key == "val_fraction":
            return f"{value:.0%}"
        if key == "in_store":
            return "?" if key not in entry else "yes" if value else "no"
        return str(value)

    rows = [[cell(e, k) for k, _ in columns] for e in entries]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (_, title) in enumerate(columns)]
    lines = [experiments.describe(experiment, profile, user=user), ""]
    lines.append("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines += ["", f"{len(entries)} run(s), {sum(e['epochs'] for e in entries)} epoch(s) in all; "
              f"{summary['to_compute']} not in the store yet: about {cost.duration(summary['estimated_cpu_s_total'])}"
              " of CPU time to compute them", *cost.describe(summary)]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``csta grid``; the last stdout line is the JSON summary."""
    from csta_lib.runs import experiments, grid  # here, not at the top: torch (start-up of --help)

    if args.list:
        print(list_text())
        return 0
    if not args.experiment:
        raise CstaInputError("--experiment is required (table1, table2, fig4 or deviations; see --list)")
    for flag in ("json", "calibrate", "no_calibrate"):
        if getattr(args, flag) and not args.plan:
            raise CstaInputError(f"--{flag.replace('_', '-')} goes with --plan (the grid's own summary is always JSON)")
    if args.calibrate and args.no_calibrate:
        raise CstaInputError("--calibrate and --no-calibrate contradict each other; give one")
    grid.check_options(args.engine, args.jobs, args.gpus_per_run, args.cpus_per_run)
    if (args.data is None) != (args.splits_file is None):
        raise CstaInputError("--data and --splits-file go together: a user dataset and its folds (csta data split)")
    user = experiments.user_data(args.data, args.splits_file) if args.data else None
    if args.plan:
        experiments.check_experiment(args.experiment)
        experiments.check_profile(args.profile)
        joins = args.engine == "ray" and bool(args.address or os.environ.get("RAY_ADDRESS"))
        threads = grid.threads_per_run(args.engine, args.jobs, joins, args.cpus_per_run)
        times = grid.plan_step_times(args.experiment, args.profile, threads, measure=not args.no_calibrate,
                                     refresh=args.calibrate, say=lambda text: print(text, file=sys.stderr), user=user)
        try:
            entries = grid.plan_entries(args.experiment, args.profile, args.store, threads=threads, times=times,
                                        user=user)
        except MissingDataError as exc:  # plan before fetching the data: the runs and their cost, no keys
            print(f"csta grid --plan: data not available ({str(exc).splitlines()[0]}); listing the runs without "
                  "their training-set sizes, content keys or store status", file=sys.stderr)
            placeholder = {d: experiments.DataSource(d, Path("(data not available)"), None)
                           for d in experiments.grid_datasets(args.experiment, args.profile)}
            entries = grid.plan_entries(args.experiment, args.profile, args.store, with_keys=False, data=placeholder,
                                        threads=threads, times=times)
        summary = grid.plan_summary(entries, args.experiment, args.profile, threads, times, user=user)
        if args.json:
            for entry in entries:
                print(json.dumps(entry))
            print(json.dumps(summary))
        else:
            print(plan_text(entries, summary, args.experiment, args.profile, user))
        return 0
    summary = grid.run_grid(
        args.experiment, args.profile, engine=args.engine, jobs=args.jobs, address=args.address,
        gpus_per_run=args.gpus_per_run, store=args.store or store.DEFAULT_STORE_DIR,
        progress=not args.no_progress, cpus_per_run=args.cpus_per_run, device=args.device, user=user,
    )
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1
