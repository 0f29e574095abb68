"""``csta model``: the presets (``list``), one preset's switches and parameter counts (``info``) and its
multiply-accumulate counts (``macs``, Table 3)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from csta_lib.config import PRESETS, get_config, official_flags, official_model_name
from csta_lib.errors import CstaInputError


def register(subparsers: Any) -> None:
    """Add ``csta model list | info | macs``."""
    parser = subparsers.add_parser(
        "model", help="CSTA model presets: list, info (switches, parameters), macs (Table 3)",
        description="The CSTA model presets (paper, table2.*, fig4.*, paper.<backbone>): their switches, "
        "parameter counts and multiply-accumulate counts.")
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    lst = sub.add_parser("list", help="list the preset names", description="List every preset name.")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    lst.set_defaults(func=cmd_list)

    info = sub.add_parser(
        "info", help="a preset's switches, official flags and parameter count",
        description="Print a preset's switches (ModelConfig), the official --model_name and flags that "
        "build it, and its parameter count. 'parameters' follows the official counter (names containing "
        "'fc' or 'classifier' left out: the unused ImageNet head, and EfficientNet's squeeze-excitation "
        "layers); 'parameters_trainable' leaves out only the unused head.")
    info.add_argument("preset", help="preset name, e.g. paper, table2.kv, fig4.resnet18 (see `csta model list`)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    macs = sub.add_parser(
        "macs", help="multiply-accumulates of score prediction and feature extraction at T steps",
        description="MACs (FlopCounterMode FLOPs / 2) of one forward at --steps T (score prediction, the "
        "three replicated channels counted as specified) and of GoogLeNet feature extraction for T frames, "
        "raw and in the paper's convention (raw x 1.40755 G / our GoogLeNet 224x224 frame count).")
    macs.add_argument("preset", help="preset name")
    macs.add_argument("--steps", type=int, required=True, help="number of 15-frame steps T (>= 1)")
    macs.add_argument("--json", action="store_true", help="print JSON")
    macs.set_defaults(func=cmd_macs)


def cmd_list(args: argparse.Namespace) -> int:
    print(json.dumps(list(PRESETS)) if args.json else "\n".join(PRESETS))
    return 0


def model_info(name: str) -> dict[str, Any]:
    """The JSON of ``csta model info``."""
    from csta_lib.model import build_model, count_parameters  # here, not at the top: torch (start-up of --help)

    config = get_config(name)
    model = build_model(config)
    return {
        "preset": name,
        "parameters": count_parameters(model, "official"),
        "parameters_trainable": count_parameters(model, "trainable"),
        "parameters_all": count_parameters(model, "all"),
        "dim": config.dim,
        "config": config.to_dict(),
        "official_model_name": official_model_name(config),
        "official_flags": official_flags(config),
    }


def cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.preset)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['preset']}: {info['official_model_name']}, D = {info['dim']}")
    print(f"  parameters (official counter): {info['parameters']:,}")
    print(f"  parameters (all trainable, without the unused ImageNet head): {info['parameters_trainable']:,}")
    for key, value in info["config"].items():
        print(f"  {key} = {value!r}")
    return 0


def cmd_macs(args: argparse.Namespace) -> int:
    from csta_lib.macs import macs_summary  # here, not at the top: torch (start-up of --help)

    if args.steps < 1:
        raise CstaInputError(f"--steps must be >= 1, got {args.steps}")
    summary = {"preset": args.preset, **macs_summary(get_config(args.preset), args.steps)}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    g = 1e9
    print(f"{args.preset} at T = {args.steps} steps (G MACs)")
    print(f"  score prediction:   raw {summary['score_prediction_macs'] / g:.3f}   "
          f"paper convention {summary['score_prediction_macs_paper_convention'] / g:.3f}")
    print(f"  feature extraction: raw {summary['feature_extraction_macs'] / g:.3f}   "
          f"paper convention {summary['feature_extraction_macs_paper_convention'] / g:.3f}")
    for module, value in summary["score_prediction_breakdown"].items():
        print(f"    {module}: {value / g:.3f}")
    print(f"  paper convention = {summary['paper_convention']} (factor {summary['paper_convention_factor']:.4f})")
    return 0
