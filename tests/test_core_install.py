"""The method and the command line's core work with only the core dependencies (`pip install .`, no extras):
each test runs in a fresh process where every other installed package is refused on import (tests/core_only.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import write_splits, write_tiny_eccv16

CORE_ONLY = [sys.executable, str(Path(__file__).with_name("core_only.py"))]
ROOT = Path(__file__).resolve().parents[1]


def core_only(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CORE_ONLY, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_the_harness_refuses_the_extras_and_keeps_the_core():
    code = """
import json
import sys
sys.path.insert(0, "tests")
from core_only import blocked_modules

refused = []
for name in ("jupyter_book", "papermill", "myst_nb", "matplotlib", "seaborn", "pandas", "ipywidgets", "yaml",
             "ray", "av", "ai_edge_litert", "pytest", "websocket", "importlinter"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        refused.append(name)
import h5py, numpy, PIL, scipy, tqdm.auto  # the method test below imports torch and torchvision
print(json.dumps(refused))
"""
    result = core_only("-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["jupyter_book", "papermill", "myst_nb", "matplotlib", "seaborn", "pandas",
                                         "ipywidgets", "yaml", "ray", "av", "ai_edge_litert", "pytest", "websocket",
                                         "importlinter"]


def test_model_summary_and_one_training_step_on_the_core_dependencies():
    code = """
import json

import numpy as np
import torch

import csta_lib
from csta_lib.train import PAPER_LR, PAPER_WEIGHT_DECAY, make_optimizer, training_step

torch.manual_seed(0)
torch.set_num_threads(1)
model = csta_lib.build_model("paper").eval()
features = torch.randn(293, 1024)
with torch.no_grad():
    scores = model(features)

n_frames = 293 * 15
picks = np.arange(293) * 15
starts = np.arange(0, n_frames, 150)
change_points = np.stack([starts, np.minimum(starts + 150, n_frames) - 1], axis=1)
summary = csta_lib.generate_summary(scores.numpy(), change_points, n_frames, picks)
users = (np.random.default_rng(0).random((3, n_frames)) < 0.15).astype(np.uint8)
tau, rho = csta_lib.rank_correlation("csta_summe", summary, users)
f1 = csta_lib.f1_score(summary, users)

model.train()
optimizer = make_optimizer(model.parameters(), PAPER_LR, PAPER_WEIGHT_DECAY)
before = [p.detach().clone() for p in model.parameters()]
loss = training_step(model, optimizer, features, torch.rand(293))
moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
print(json.dumps({"shape": list(scores.shape), "summary": [int(summary.size), int(summary.sum())],
                  "tau": tau, "f1": f1, "loss": float(loss), "moved": moved}))
"""
    result = core_only("-c", code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == [293]
    assert out["summary"][0] == 293 * 15 and 0 < out["summary"][1] <= 0.15 * 293 * 15
    assert -1 <= out["tau"] <= 1 and 0 <= out["f1"] <= 1
    assert out["loss"] > 0 and out["moved"] > 0


def test_the_command_line_core_on_the_core_dependencies(tmp_path):
    result = core_only("-m", "csta_lib.cli", "model", "info", "paper", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parameters"] == 8_754_851

    data = write_tiny_eccv16(tmp_path / "eccv16_dataset_summe_tiny.h5")
    splits = write_splits(tmp_path / "splits.txt", [([1, 2, 3, 4], [5, 6])])
    result = core_only("-m", "csta_lib.cli", "train", "--preset", "paper", "--data", str(data), "--splits-file",
                       str(splits), "--split", "0", "--epochs", "1", "--select", "test-max,last",
                       "--val-fraction", "0", "--store", str(tmp_path / "store"), "--no-progress")
    assert result.returncode == 0, result.stderr
    record = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert set(record["selected"]) == {"test-max", "last"}
