"""``csta data``: what data is here (``check``), download a file (``fetch``), build a surrogate
eccv16 file (``make-surrogate``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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

    fetch = sub.add_parser("fetch", help="download a manifest file from its published URL into data/",
                           description="Download NAME from its direct URL into the project's data/ folder, "
                           "checking its sha256; written atomically. Only files with a direct URL can be "
                           "fetched (torchvision weights); for the others the error says where to get them.")
    fetch.add_argument("name", help="logical name, e.g. weights.torchvision.googlenet (see `csta data check`)")
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


def check_rows(hash_files: bool = True) -> list[dict[str, Any]]:
    """One row per manifest entry: name, status, path (or None), expected location, url, licence."""
    from csta_lib.data import locator
    from csta_lib.errors import DataFormatError

    rows = []
    for name, e in locator.manifest().items():
        path = locator.find(name)
        status, detail = "missing", ""
        if path is not None:
            if hash_files:
                try:
                    status = locator.verify(name, path)
                except DataFormatError as exc:
                    status, detail = "mismatch", str(exc)
            else:
                status = "unverified"
        rows.append({"name": name, "status": status, "path": str(path) if path else None,
                     "expected": e.path, "url": e.url, "sha256": e.sha256, "licence": e.licence,
                     "direct_download": locator.direct_url(e) is not None, "detail": detail})
    return rows


def cmd_check(args: argparse.Namespace) -> int:
    from csta_lib.data import locator

    rows = check_rows(hash_files=not args.no_hash)
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


def cmd_fetch(args: argparse.Namespace) -> int:
    from csta_lib.data import locator
    from csta_lib.errors import CstaInputError

    try:
        e = locator.entry(args.name)
    except KeyError as exc:
        raise CstaInputError(exc.args[0]) from None
    path = locator.fetch(e, root=args.root, force=args.force)
    print(f"{args.name}: {path} ({locator.verify(args.name, path)})")
    return 0


def cmd_make_surrogate(args: argparse.Namespace) -> int:
    from csta_lib.data import surrogate
    from csta_lib.data.eccv16 import load_eccv16

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
