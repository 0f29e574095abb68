"""Builders shared by test modules of several layers: tiny eccv16-layout files, split files, run records and a
fast stand-in for the CSTA model. Fixtures built from them live in ``conftest.py``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from csta_lib.runs import locator, store
from csta_lib.runs.spec import RunSpec


N_VIDEOS = 6


SHOT = 45  # frames per shot: 3 steps


def write_tiny_eccv16(path: Path, seed: int = 0, n_videos: int = N_VIDEOS) -> Path:
    """A small eccv16-layout file: features carry a noisy copy of gtscore so that training can learn."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(1024).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5.attrs["dataset"] = "summe"
        h5.attrs["surrogate"] = True
        for i in range(1, n_videos + 1):
            n_steps = 16 + (i % 3) * 2
            n_frames = n_steps * 15
            picks = np.arange(n_steps) * 15
            starts = np.arange(0, n_frames, SHOT)
            change_points = np.stack([starts, np.minimum(starts + SHOT, n_frames) - 1], axis=1)
            users = np.zeros((3, n_frames), dtype=np.uint8)
            for u in range(3):
                for s, e in change_points[rng.choice(len(change_points), 1, replace=False)]:
                    users[u, s:e + 1] = 1
            gtscore = users.mean(0)[picks].astype(np.float32)
            features = rng.standard_normal((n_steps, 1024)).astype(np.float32) + gtscore[:, None] * direction
            g = h5.create_group(f"video_{i}")
            g["features"], g["gtscore"], g["user_summary"] = features, gtscore, users
            g["change_points"], g["n_frames"], g["picks"] = change_points, n_frames, picks
            g["n_frame_per_seg"] = change_points[:, 1] - change_points[:, 0] + 1
    return path


def write_splits(path: Path, folds: list[tuple[list[int], list[int]]]) -> Path:
    lines = [f"SumMe/split{k + 1}/" + ",".join(f"video_{i}" for i in tr) + "/" + ",".join(f"video_{i}" for i in te)
             for k, (tr, te) in enumerate(folds)]
    path.write_text("\n".join(lines) + "\n")
    return path


class StandIn(nn.Module):
    """A fast stand-in for CSTA with the same interface: (T, 1024) → (T,) scores in (0, 1)."""

    def __init__(self, config, weights=None) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.BatchNorm1d(1024)
        self.dropout = nn.Dropout(0.5)
        self.linear = nn.Linear(1024, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(self.dropout(self.norm(features)))).squeeze(-1)


def spec_for(tiny: dict[str, Path], **changes) -> RunSpec:
    base = dict(preset="paper", data_path=str(tiny["data"]), splits_file=str(tiny["splits"]), split=0, seed=3,
                epochs=2, device="cpu", cnn_weights=None)
    base.update(changes)
    return RunSpec(**base)


def make_record(dataset: str, split: int, seed: int, tau: float, rho: float, *, variant: str = "paper",
                surrogate: bool = True, val: bool = True) -> dict:
    """A minimal record with the fields the tables read; val/last selections are offsets of test-max."""
    selected = {
        "test-max": {"epoch": 7, "test_tau": tau, "test_rho": rho, "test_f1": 0.5, "checkpoint": "k/epoch_007.pt"},
        "last": {"epoch": 10, "test_tau": tau - 0.1, "test_rho": rho - 0.1, "test_f1": 0.4,
                 "checkpoint": "k/epoch_010.pt"},
    }
    if val:
        selected["val"] = {"epoch": 5, "test_tau": tau - 0.05, "test_rho": rho - 0.05, "test_f1": None,
                           "checkpoint": "k/epoch_005.pt"}
    identity = {"dataset": dataset, "split": split, "seed": seed, "epochs": 10, "variant": variant}
    return {
        "format": store.RECORD_FORMAT,
        "key": store.content_key(identity),
        "identity": identity,
        "preset": variant.split("+")[0],
        "variant": variant,
        "dataset": dataset,
        "split": {"index": split},
        "seed": seed,
        "n_epochs": 10,
        "protocol": {"rank": {"summe": "csta_summe", "tvsum": "casum_tvsum"}[dataset]},
        "provenance": {"surrogate": surrogate, "imagenet_weights": None},
        "selection": {"val_fraction": 0.2 if val else 0.0},
        "selected": selected,
    }


def tiny_video(n_steps: int = 4, n_frames: int = 60, dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid eccv16 video: picks every 15 frames, two shots, three users."""
    rng = np.random.default_rng(seed)
    half = n_frames // 2
    summary = np.zeros((3, n_frames), dtype=np.uint8)
    summary[:, :10] = 1
    return {
        "features": rng.standard_normal((n_steps, dim)).astype(np.float32),
        "gtscore": rng.random(n_steps).astype(np.float32),
        "user_summary": summary,
        "change_points": np.array([[0, half - 1], [half, n_frames - 1]], dtype=np.int32),
        "n_frame_per_seg": np.array([half, n_frames - half], dtype=np.int32),
        "n_frames": np.int32(n_frames),
        "picks": (np.arange(n_steps) * 15).astype(np.int32),
        "video_name": "tiny",
    }


def write_eccv16(path: Path, videos: dict[str, dict], attrs: dict | None = None) -> Path:
    with h5py.File(path, "w") as h5:
        for name, value in (attrs or {}).items():
            h5.attrs[name] = value
        for key, fields in videos.items():
            group = h5.create_group(key)
            for name, value in fields.items():
                group[name] = value
    return path



def need(*names: str) -> Path:
    """The path of the real data file ``names[0]``; skip the test unless every named file is in a data root."""
    missing = [n for n in names if locator.find(n) is None]
    if missing:
        pytest.skip(f"real data file(s) {', '.join(missing)} not found in any data root (see `csta data check`)")
    return locator.find(names[0])


def comparable_record(record: dict) -> str:
    """A run record as JSON without what legitimately differs between two computations of the same key (timings,
    host, creation time): two engines, machines or attempts that agree give equal strings."""
    volatile = {"wall_time_s", "train_time_s", "created_utc", "_path", "host", "hostname"}
    clean = {k: v for k, v in record.items() if k not in volatile}
    clean["epochs"] = [{k: v for k, v in e.items() if k not in ("seconds", "eval_seconds")}
                       for e in record.get("epochs", [])]
    return json.dumps(clean, sort_keys=True)


def record_differences(a: dict, b: dict) -> list[str]:
    """Where two records differ beyond :func:`comparable_record`'s volatile fields: ``path: a != b`` per leaf."""
    found: list[str] = []

    def walk(x: object, y: object, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{path}.{key}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for index, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{path}[{index}]")
        elif x != y:
            found.append(f"{path}: {x!r} != {y!r}")

    walk(json.loads(comparable_record(a)), json.loads(comparable_record(b)), "record")
    return found
