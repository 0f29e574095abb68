"""``csta summarize``: turn a video file into a summary video with a CSTA checkpoint."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import sys
from typing import Any

from csta_lib.cli.options import add_shot_arguments, number, shot_settings
from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.evaluation import SUMMARY_BUDGET
from csta_lib.runs.video.x264 import X264_PRESET, X264_PRESETS  # no PyAV: the help shows the default

DESCRIPTION = """\
Summarise a video: decode it with PyAV and sample every STRIDE-th frame, encode the samples
(googlenet: torchvision GoogLeNet pool5 with local ImageNet weights; mobilenet_v1_1024: the real
pretrained MobileNetV1 TFLite embedding, the default where the GoogLeNet weights are missing), cut
shots with KTS, score them with the CSTA checkpoint, pick shots with the 0/1 knapsack at BUDGET, and
write the selected shots to an H.264 video (audio kept) plus a JSON sidecar (OUT with .json).

Timing follows the video's real presentation timestamps, so variable-frame-rate videos (phones) keep
their real shot times, frame durations and sound; the sidecar's duration_s is the input's real length
and summary_duration_s the written video's.

Every output path is checked before any work: none may be the input video, the checkpoint or another
output (links included), a directory, below a file, or have a name longer than the file system allows.

Exit codes: 0 done, 2 bad input (missing or unreadable video, bad argument, feature mismatch,
unwritable output, full disk), 1 internal error. Nothing is left at OUT when the command fails, and no
folder is created."""




def register(subparsers: Any) -> None:
    """Add ``summarize`` to the ``csta`` command."""
    p = subparsers.add_parser("summarize", help="summarise a video file into a summary video",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="input video file (anything FFmpeg reads)")
    p.add_argument("-o", "--output", metavar="OUT.mp4", required=True,
                   help="summary video to write (.mp4, .m4v, .mov or .mkv); sidecar JSON beside it")
    p.add_argument("--checkpoint", metavar="CKPT", required=True,
                   help="CSTA checkpoint (csta-checkpoint/1, from `csta train` or an imported official one)")
    p.add_argument("--encoder", choices=("googlenet", "mobilenet_v1_1024"), default=None,
                   help="frame encoder (default: googlenet if its ImageNet weights are found, else mobilenet_v1_1024)")
    p.add_argument("--budget", type=number("a budget in (0, 1]"), default=SUMMARY_BUDGET,
                   help=f"summary length as a fraction of the video, in (0, 1] (default {SUMMARY_BUDGET:g}, the "
                   "paper's)")
    sampling = p.add_mutually_exclusive_group()
    # default None, not FRAME_STEP: argparse would let an explicit "--stride 15" (the same int object) pass beside
    # --sample-fps
    sampling.add_argument("--stride", type=int, default=None, help="sample every STRIDE-th decoded frame "
                          f"(default {FRAME_STEP}, the official sample rate: 2 fps at 30 fps; the stride is in frames "
                          "whatever the frame rate, so on a variable-frame-rate video samples are denser where it is "
                          "higher)")
    sampling.add_argument("--sample-fps", type=float, default=None, metavar="FPS",
                          help="instead of --stride, sample by time: one frame every round(fps / FPS) / fps seconds "
                          "(about FPS per second; exactly every round(fps / FPS)-th frame at a constant rate); "
                          "recommended for variable-frame-rate videos")
    add_shot_arguments(p)
    p.add_argument("--device", default="cpu", help="where the CSTA model scores the video: cpu (default), cuda or "
                   "cuda:N (an error when CUDA is not available); decoding and the frame encoder stay on the CPU")
    p.add_argument("--allow-feature-mismatch", action="store_true",
                   help="run even if the checkpoint was trained on other features than the encoder's "
                   "(warns, and records it in the sidecar)")
    p.add_argument("--random-weights", action="store_true",
                   help="googlenet only: run with RANDOM weights when its ImageNet weights are missing "
                   "(features and summary are then meaningless; for testing)")
    p.add_argument("--contact-sheet", metavar="PNG", default=None, help="also write a contact sheet of the "
                   "selected shots")
    p.add_argument("--timeline", metavar="PNG", default=None, help="also write the score timeline with shot "
                   "boundaries")
    p.add_argument("--sidecar", metavar="JSON", default=None, help="sidecar path (default: OUT with .json)")
    p.add_argument("--no-audio", action="store_true", help="drop the audio track")
    p.add_argument("--preset", default=X264_PRESET, choices=X264_PRESETS, metavar="PRESET",
                   help=f"x264 speed preset (default {X264_PRESET}; slower presets give smaller files): "
                   + ", ".join(X264_PRESETS))
    p.add_argument("--json", action="store_true", help="print the sidecar JSON as the last line of stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: the video pipeline needs PyAV (the [video] extra, reported by the caller
    # when missing), which `csta --help` must not import.
    from csta_lib.runs.video import summarize

    # At exit, freeze what is alive so that the interpreter's final collections skip the ~300k objects of torch
    # and torchvision (about 0.4 s of a 3-s run); nothing changes while the process runs.
    atexit.unregister(gc.freeze)  # registered once, however often run() is called in one process
    atexit.register(gc.freeze)
    show_progress = not args.quiet
    shots = shot_settings(args)  # before any work: bad settings are one line
    result = summarize(
        args.input, args.output, args.checkpoint,
        encoder=args.encoder, budget=args.budget, sample_fps=args.sample_fps,
        stride=FRAME_STEP if args.stride is None else args.stride,
        allow_feature_mismatch=args.allow_feature_mismatch, random_weights=args.random_weights,
        sidecar=args.sidecar, contact_sheet_png=args.contact_sheet, timeline_png=args.timeline,
        keep_audio=not args.no_audio, preset=args.preset, progress=show_progress, shot_settings=shots,
        device=args.device,
    )
    record = result.sidecar
    if args.json:
        sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    else:
        chosen = record["selected_shots"]
        print(f"{record['output']}: {len(chosen)} of {len(record['shots'])} shots, "
              f"{record['summary_duration_s']:.1f} s of {record['duration_s']:.1f} s "
              f"(encoder {record['encoder']}, budget {record['budget']:.0%}); sidecar {record['sidecar']}")
    return 0
