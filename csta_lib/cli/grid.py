"""``csta grid``: run an experiment grid (the paper's protocol across presets, datasets, folds and seeds).

    csta grid --experiment table1 --profile quick --engine local [--jobs N] --store DIR
    csta grid --experiment table1 --profile paper --engine ray [--address HOST:PORT] [--gpus-per-run 0.25] --store DIR
    csta grid --list

Progress goes to standard error; the last line of standard output is a JSON summary with at least ``runs``,
``computed``, ``reused`` and ``failed``. The exit code is 0 when every run is stored, 1 when some run failed
(rerunning the same command computes only the missing runs), 2 for bad input.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Expand a named experiment into its training runs (model variant x dataset x fold x seed, sized by the
profile), skip every run whose record is already in the results store (content address), and train the rest.

Experiments: table1 (CSTA, Table 1), table2 (the seven ablation rows), fig4 (the four CNNs as direct score
predictors), deviations (CSTA as coded vs LayerNorm after the skip vs bilinear resizing).
Profiles: smoke (seconds, tiny surrogate data, for tests), quick (the book's default on a 2-core CPU: fold 0,
one seed, 2-3 epochs), paper (5 folds x 100 epochs x 5 seeds, both datasets: GPU or cluster work).
`csta grid --list` prints what each profile runs and cuts.

Engines: local runs in this process (--jobs 1) or in N worker processes; ray submits one Ray task per run to a
local Ray cluster started for the grid, or to the cluster at --address / $RAY_ADDRESS (start one with
`ray start --head`; workers join with `ray start --address HEAD:6379`). On GPU nodes --gpus-per-run 0.25 packs
four runs on one GPU.
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-run lines")
    p.add_argument("--list", action="store_true", help="print every experiment and profile with what it cuts, and exit")
    p.set_defaults(func=main)


def list_text() -> str:
    """Every (experiment, profile) with its size and cuts, and the rough CPU time of the quick profile."""
    from csta_lib import experiments

    lines = []
    for profile in experiments.PROFILES:
        lines.append(f"profile {profile}: {experiments.PROFILE_NOTES[profile]}")
        for name in experiments.EXPERIMENTS:
            lines.append(f"  {name}: {experiments.describe(name, profile)}")
    names = list(experiments.EXPERIMENTS)
    seconds = experiments.estimate_profile_seconds(names, "quick")
    lines.append(f"quick profile, all experiments: {experiments.unique_runs(names, 'quick')} distinct runs, about "
                 f"{seconds / 60:.0f} CPU minutes on a 2-core machine (estimate)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``csta grid``; the last stdout line is the JSON summary."""
    import json

    from csta_lib import grid, store
    from csta_lib.errors import CstaInputError

    if args.list:
        print(list_text())
        return 0
    if not args.experiment:
        raise CstaInputError("--experiment is required (table1, table2, fig4 or deviations; see --list)")
    summary = grid.run_grid(
        args.experiment, args.profile, engine=args.engine, jobs=args.jobs, address=args.address,
        gpus_per_run=args.gpus_per_run, store=args.store or store.default_store_dir(),
        progress=not args.no_progress, cpus_per_run=args.cpus_per_run, device=args.device,
    )
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1
