"""What a training run says about itself: the JSON run record, its per-epoch entries and its provenance.

:func:`build_record` assembles the record that :func:`csta_lib.runs.training.run` writes into the results store
(:mod:`csta_lib.runs.store`); the book and ``csta results`` read it.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch

from csta_lib import __version__
from csta_lib.evaluation import F1_AGGREGATION, SUMMARY_BUDGET, mean_metrics
from csta_lib.runs import store
from csta_lib.runs.checkpoint import checkpoint_name
from csta_lib.runs.selection import SELECTED_ON
from csta_lib.runs.spec import PreparedRun


def library_versions(train_code: int) -> dict[str, str]:
    """Versions that can change a run's numbers (``train_code``: the training code version of the run)."""
    return {"csta_lib": __version__, "train_code": str(train_code), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


def device_description(device: str, threads: int) -> str:
    """The device in words (GPU name for CUDA, the CPU architecture and the run's torch threads otherwise)."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, {threads} threads)"


def features_info(prep: PreparedRun) -> dict[str, Any]:
    """What the model is trained on (written into each checkpoint and the record's provenance): the encoder of
    a user dataset's features is the one its file records (``csta summarize`` then encodes a new video the same
    way), and such a run says that it ran on a user dataset, which is neither the paper's data nor a surrogate."""
    data = prep.data
    if data.is_user:
        return {"encoder": str(data.provenance.get("feature_kind") or data.provenance.get("encoder")),
                "surrogate": False, "imagenet_weights": prep.cnn_weights, "user_dataset": True,
                "dataset_sha256": data.sha256}
    return {
        "encoder": "surrogate" if data.is_surrogate else "eccv16_googlenet_pool5",
        "surrogate": bool(data.is_surrogate),
        "imagenet_weights": prep.cnn_weights,
    }


def f1_shots(data_provenance: Mapping[str, Any]) -> dict[str, str]:
    """What an F1 was computed on, from a feature file's provenance (``Eccv16Dataset.provenance``, kept in every
    record as ``provenance.data``): ``{"shots", "user_summaries"}`` in words.

    The real eccv16 files and the SumMe surrogate carry the eccv16 KTS shots and user summaries; the TVSum
    surrogate has uniform 2-second shots and user summaries derived from the raw annotations (each user's 15 %
    knapsack over those shots), because the real TVSum KTS shots are not available.
    """
    if data_provenance.get("kind") == "user":  # csta data build: KTS on the user's videos, their annotators
        users = ("the annotators' selected intervals" if data_provenance.get("style") == "summe" else
                 f"each annotator's {data_provenance.get('budget', SUMMARY_BUDGET):.0%} knapsack over the same shots")
        return {"shots": "the KTS shots of the user dataset's videos", "user_summaries": users}
    sources = data_provenance.get("sources") or {}
    if "uniform" in str(sources.get("change_points", "")):
        shots = "uniform 2-second shots (the eccv16 KTS shots are not available)"
    else:
        shots = "the eccv16 KTS shots"
    if "knapsack" in str(sources.get("user_summary", "")):
        users = f"each user's {SUMMARY_BUDGET:.0%} knapsack over the same shots, derived from the raw annotations"
    else:
        users = "the eccv16 user summaries"
    return {"shots": shots, "user_summaries": users}


def f1_protocol_text(dataset: str, data_provenance: Mapping[str, Any]) -> str:
    """The record's ``protocol.f1``: the summary, its shots, the user summaries and how users are aggregated."""
    what = f1_shots(data_provenance)
    return (f"{SUMMARY_BUDGET:.0%} knapsack summary over {what['shots']} vs {what['user_summaries']}; "
            f"{F1_AGGREGATION[data_provenance.get('style', dataset)]} over users")


def epoch_entry(epoch: int, loss: float, seconds: float, eval_seconds: float,
                test: Mapping[str, Mapping[str, float]], val: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """One epoch of the record: the training loss, the mean test (and validation) metrics, the times."""
    entry: dict[str, Any] = {"epoch": epoch, "train_loss": loss}
    for prefix, part in (("test", test), ("val", val)):
        if part:  # plain means: an undefined (NaN) video makes the split mean NaN, as in the official code
            means = mean_metrics(part)
            for metric in ("tau", "rho", "f1"):
                entry[f"{prefix}_{metric}"] = means[metric]
    entry["seconds"] = seconds
    entry["eval_seconds"] = eval_seconds
    return entry


def selected_entry(policy: str, epoch: int | None, history: Sequence[Mapping[str, Any]],
                   per_video: Sequence[Mapping[str, Any]], ckpt_rel: str) -> dict[str, Any]:
    """The record's entry of one policy: its epoch's metrics, checkpoint (relative to the record's folder) and
    per-video test metrics."""
    fallback = epoch is None
    if epoch is None:  # no epoch ever improved both means (all NaN): report the last epoch, flagged
        epoch = len(history)
    entry = history[epoch - 1]
    out = {"epoch": epoch, "test_tau": entry["test_tau"], "test_rho": entry["test_rho"],
           "test_f1": entry["test_f1"], "checkpoint": f"{ckpt_rel}/{checkpoint_name(epoch)}",
           "selected_on": SELECTED_ON[policy]}
    if "val_tau" in entry:
        out.update(val_tau=entry["val_tau"], val_rho=entry["val_rho"], val_f1=entry["val_f1"])
    out["per_video"] = per_video[epoch - 1]["test"]
    if fallback:
        out["note"] = f"no epoch improved both mean tau and rho for policy {policy}; the last epoch is reported"
    return out


def build_record(prep: PreparedRun, loop: Mapping[str, Any], record_file: Path, wall: float) -> dict[str, Any]:
    """The JSON run record.

    Keys: ``format``, ``key`` (content address), ``identity`` (what the key hashes: everything that determines
    the run's results), ``preset``, ``variant``, ``overrides``, ``dataset``, ``split``
    (``index`` 0-based, ``source``, ``train_keys`` actually trained on, ``val_keys``, ``test_keys``,
    ``official_train_keys``), ``seed``, ``n_epochs``, ``config`` (ModelConfig dict), ``training`` (optimiser,
    loss, batching), ``selection`` (policies, ``val_fraction``, what was trained on, the rule, labels),
    ``protocol`` (``rank``: the τ/ρ protocol; ``f1``: how F1 was computed, :func:`f1_protocol_text`;
    ``f1_shots``: the summary's shots), ``provenance`` (``surrogate``, ``encoder``, ``imagenet_weights``,
    ``cnn_init``, data file and sha256, the dataset's own provenance, splits file),
    ``epochs`` (per epoch: ``epoch``, ``train_loss``, ``test_tau``/``test_rho``/``test_f1``, ``val_*`` when there
    is a validation subset, ``seconds``, ``eval_seconds``), ``selected`` (per policy: ``epoch``, ``test_tau``,
    ``test_rho``, ``test_f1``, ``val_*``, ``checkpoint`` relative to the record's folder, ``selected_on``,
    ``per_video`` test metrics), ``wall_time_s``, ``train_time_s``, ``resumed_from_epoch``, ``device``,
    ``deterministic``, ``versions``, ``created_utc``.
    """
    spec, data = prep.spec, prep.data
    ckpt_rel = store.checkpoint_dir(record_file).name
    return {
        "format": store.RECORD_FORMAT,
        "key": prep.key,
        "identity": prep.identity,  # what the key hashes: a reader checks that the key is its content address
        "preset": prep.preset,
        "variant": spec.variant,
        "overrides": [list(pair) for pair in spec.overrides],
        "dataset": data.dataset,
        "split": {"index": spec.split, "source": prep.split.source, "train_keys": list(prep.train_keys),
                  "val_keys": list(prep.val_keys), "test_keys": list(prep.test_keys),
                  "official_train_keys": list(prep.split.train_keys)},
        "seed": spec.seed,
        "n_epochs": spec.epochs,
        "config": prep.config.to_dict(),
        "training": {"optimizer": "Adam (coupled L2 weight decay)", "lr": spec.lr, "weight_decay": spec.weight_decay,
                     "betas": [0.9, 0.999], "eps": 1e-8, "loss": "MSE(prediction, gtscore)",
                     "batch": "one video per step, shuffled", "init_checkpoint": spec.init_checkpoint},
        "selection": {
            "policies": list(prep.policies), "val_fraction": prep.val_fraction,
            "trained_on": "official training keys minus the validation subset" if prep.val_keys
            else "the official training keys",
            "rule": "last epoch where mean tau AND mean rho both improve strictly (test-max: on test; val: on val)",
            "labels": {p: store.POLICY_LABELS[p] for p in prep.policies},
        },
        "protocol": {"rank": prep.protocol, "f1": f1_protocol_text(data.dataset, data.provenance),
                     "f1_shots": f1_shots(data.provenance)["shots"]},
        "provenance": {**loop["features"],
                       "cnn_init": (f"weights {prep.cnn_weights}" if prep.cnn_weights
                                    else "random (no ImageNet weights)"),
                       "data_file": str(data.path), "data_sha256": data.sha256,
                       "data_label": data.label, "data": data.provenance,
                       "splits_file": spec.splits_file or "official CSTA splits"},
        "epochs": loop["history"],
        "selected": {p: selected_entry(p, loop["chosen"][p], loop["history"], loop["per_video"], ckpt_rel)
                     for p in prep.policies},
        "wall_time_s": wall,
        "train_time_s": loop["seconds"],
        "resumed_from_epoch": loop["resumed_from"],
        "device": device_description(prep.device, prep.threads),
        "deterministic": prep.device == "cpu",
        "versions": library_versions(prep.identity["code"]["train"]),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
