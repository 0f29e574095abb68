"""The two files a training run keeps beside its record: model checkpoints and the resume snapshot.

A **checkpoint** (``csta-checkpoint/1``, one per selected epoch, ``epoch_NNN.pt``) holds what rebuilds the
model: the preset and ``ModelConfig`` dict, the state dict, what the model was trained on (``features``) and
free metadata (``meta``). A **resume snapshot** (``csta-resume/2``, ``resume.pt``) holds what continues an
interrupted run bit-identically: model and optimiser states, every RNG state, the shuffle generator and the
metrics so far. Both hold only tensors and plain data and are read with ``weights_only=True``
(:func:`safe_torch_load`), so a file from a store never runs code when loaded.
"""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csta_lib.config import ModelConfig, get_config
from csta_lib.errors import ConfigError, CstaInputError, DataFormatError, first_line
from csta_lib.model import build_model
from csta_lib.runs.io import atomic_path

CHECKPOINT_FORMAT = "csta-checkpoint/1"
#: 2: only tensors and plain data (loads with weights_only=True); RNG states as tensors and numbers.
RESUME_FORMAT = "csta-resume/2"
#: What a resume snapshot holds, with the type of each entry (checked after the safe load, before use).
RESUME_FIELDS = {"format": str, "key": str, "epoch": int, "model": Mapping, "optimizer": Mapping, "rng": Mapping,
                 "history": list, "per_video": list, "elapsed": float}
RESTART_HINT = "delete it to restart the run"


# ---------------------------------------------------------------------------------------------------------------
# loading safely


def safe_torch_load(path: Path, what: str, map_location: str = "cpu", *, hint: str = "") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``): never unpickles objects.

    Anything else (a pickled object, which could run code when loaded; a corrupt or foreign file) raises
    :class:`DataFormatError` naming the file, before any object is built. Torch's warnings and its multi-page
    explanations are kept out of the one-line message.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise DataFormatError(f"{path}: not a {what}: it holds something other than tensors and plain data "
                              "(refused unread: loading arbitrary objects could run code), "
                              f"or is corrupt{hint}") from None
    except Exception as exc:  # zip/storage errors of arbitrary kinds; keep torch's first line only
        first = first_line(exc)
        raise DataFormatError(f"{path}: not a {what} (cannot be loaded: {first}){hint}") from None


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_name(epoch: int) -> str:
    """The file name of an epoch's checkpoint in a run's checkpoint folder (``epoch_007.pt``)."""
    return f"epoch_{epoch:03d}.pt"


def prune_checkpoints(ckpt_dir: Path, keep_epochs: set[int]) -> None:
    """Delete the checkpoints of epochs not in ``keep_epochs`` (no policy selects them any more)."""
    for path in ckpt_dir.glob("epoch_*.pt"):
        if int(path.stem.split("_")[1]) not in keep_epochs:
            path.unlink(missing_ok=True)


def _model_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        raise CstaInputError("save_checkpoint: the model has no .config; pass config=")
    return config


def save_checkpoint(
    path: str | Path,
    model: Any,
    features: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    preset: str | None = None,
    config: Any = None,
) -> Path:
    """Write a CSTA checkpoint atomically (format ``csta-checkpoint/1``, see CONTRIBUTING.md).

    ``features`` says what the model was trained on: ``encoder``, ``surrogate`` (bool), ``imagenet_weights``
    (str or None). ``meta`` is free JSON-able metadata (run key, epoch, policy, metrics). ``config`` defaults to
    ``model.config``; ``preset`` defaults to ``meta["preset"]``.
    """
    config = config if config is not None else _model_config(model)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "preset": preset if preset is not None else meta.get("preset"),
        "config": config_dict,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "features": dict(features),
        "meta": dict(meta),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict and check its format; raise :class:`CstaInputError` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CstaInputError(f"{path}: no such checkpoint file")
    payload = safe_torch_load(path, "csta checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataFormatError(f"{path}: not a csta checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for name in ("config", "state_dict", "features", "meta"):
        if name not in payload:
            raise DataFormatError(f"{path}: csta checkpoint without {name!r}")
    return payload


def check_checkpoint_config(path: str | Path, payload: Mapping[str, Any], config: Any) -> None:
    """Raise :class:`ConfigError` if a checkpoint was not made with ``config``."""
    theirs = payload["config"]
    ours = config.to_dict()
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if diff or set(theirs) != set(ours):
        details = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"{path}: checkpoint of preset {payload.get('preset')!r} does not match this run's "
                          f"model config ({details or 'different fields'})")


def load_checkpoint(path: str | Path, map_location: str = "cpu", *,
                    expected_config: Any = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode: ``(model, checkpoint dict)``.

    With ``expected_config`` (a preset name or ``ModelConfig``), a checkpoint of another configuration raises
    :class:`ConfigError` naming the switches that differ.
    """
    payload = read_checkpoint(path, map_location)
    config = ModelConfig.from_dict(payload["config"])
    if expected_config is not None:
        check_checkpoint_config(path, payload, get_config(expected_config))
    # Build on the meta device: random initialisation of weights that are about to be overwritten costs
    # seconds (GoogLeNet's truncated-normal init); ``assign=True`` then adopts the checkpoint's tensors.
    with torch.device("meta"):
        model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"], assign=True)
    except RuntimeError as exc:
        raise DataFormatError(f"{path}: weights do not fit the checkpoint's own config ({exc})") from exc
    left_on_meta = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left_on_meta:
        raise DataFormatError(f"{path}: checkpoint lacks tensors {', '.join(left_on_meta)}")
    model.eval()
    return model, payload


# ---------------------------------------------------------------------------------------------------------------
# resume snapshots


def resume_file(ckpt_dir: Path) -> Path:
    """Where a run's resume snapshot lives (beside its checkpoints; deleted once the record is written)."""
    return ckpt_dir / "resume.pt"


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values only (so snapshots load with ``weights_only=True``)."""
    version, mt_words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(mt_words, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states saved by :func:`_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: Path, key: str, model: Any, optimizer: Any, shuffle: torch.Generator,
                history: list[dict[str, Any]], per_video: list[dict[str, Any]], elapsed: float) -> None:
    """Write the resume snapshot of run ``key`` after ``len(history)`` epochs, atomically."""
    payload = {
        "format": RESUME_FORMAT, "key": key, "epoch": len(history), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": _rng_state(), "shuffle": shuffle.get_state(),
        "history": history, "per_video": per_video, "elapsed": float(elapsed),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_resume(path: Path, key: str) -> dict[str, Any] | None:
    """The resume snapshot of run ``key``, or None if there is none.

    Loaded with ``weights_only=True`` only (tensors and plain containers): a snapshot holding anything else is
    refused with :class:`DataFormatError` (exit 2, "delete it to restart the run") and nothing in it is built or
    run. So is a snapshot of another run, of an older format, or with missing or mistyped entries.
    """
    if not path.is_file():
        return None
    payload = safe_torch_load(path, f"{RESUME_FORMAT} resume snapshot", hint=f"; {RESTART_HINT}")
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise DataFormatError(f"{path}: not a {RESUME_FORMAT} resume snapshot (an older format or another file); "
                              f"{RESTART_HINT}")
    if payload.get("key") != key:
        raise DataFormatError(f"{path}: resume snapshot of another run (expected key {key}); delete it")
    wrong = [name for name, kind in RESUME_FIELDS.items() if not isinstance(payload.get(name), kind)]
    if not wrong and not isinstance(payload.get("shuffle"), torch.Tensor):
        wrong = ["shuffle"]
    if wrong or payload["epoch"] != len(payload["history"]) or len(payload["history"]) != len(payload["per_video"]):
        raise DataFormatError(f"{path}: damaged resume snapshot ({', '.join(wrong) or 'epoch counts disagree'}); "
                              f"{RESTART_HINT}")
    return payload


def restore_resume(path: Path, key: str, model: Any, optimizer: Any, shuffle: torch.Generator) -> dict[str, Any] | None:
    """Put run ``key`` back where its snapshot left it (model, optimiser, every RNG, the shuffle generator) and
    return the snapshot (its ``history``, ``per_video`` and ``elapsed`` continue the run); None if there is none."""
    snapshot = load_resume(path, key)
    if snapshot is None:
        return None
    try:
        model.load_state_dict(snapshot["model"])
        optimizer.load_state_dict(snapshot["optimizer"])
        _set_rng_state(snapshot["rng"])
        shuffle.set_state(snapshot["shuffle"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        first = first_line(exc)
        raise DataFormatError(f"{path}: damaged resume snapshot ({first}); {RESTART_HINT}") from None
    return snapshot
