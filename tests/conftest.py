"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import StandIn, write_splits, write_tiny_eccv16


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module: on a shared 2-core machine two threads spin against each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clearly random (untrained) `paper` CSTA checkpoints, labelled as trained on MobileNetV1 features and on
    surrogate features, for the video pipeline's tests (speed and plumbing do not depend on the weights)."""
    import torch

    from csta_lib.model import build_model
    from csta_lib.runs.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_model("paper").eval()
    meta = {"note": "RANDOM weights, made by tests/conftest.py"}
    features = {
        "mobilenet": {"encoder": "mobilenet_v1_1024", "surrogate": False, "imagenet_weights": None},
        "surrogate": {"encoder": "surrogate", "surrogate": True, "imagenet_weights": None},
    }
    return {name: save_checkpoint(folder / f"random_{name}.pt", model, info, meta, preset="paper")
            for name, info in features.items()}


@pytest.fixture(scope="session")
def preset_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight checkpoints of CSTA and two Table 2 rows (one without positional encoding, one without the
    spatial softmax and the CLS token), labelled as trained on surrogate features: for the attention explorer's
    tests (what its pictures show does not depend on training)."""
    import torch

    from csta_lib.model import build_model
    from csta_lib.runs.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("preset-ckpt")
    torch.manual_seed(0)
    features = {"encoder": "surrogate", "surrogate": True, "imagenet_weights": None}
    return {p: save_checkpoint(folder / f"{p}.pt", build_model(p).eval(), features,
                               {"note": "RANDOM weights, made by tests/conftest.py"}, preset=p)
            for p in ("paper", "table2.kv", "table2.attention")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Six SumMe-like videos (surrogate-labelled) and three folds of them."""
    folder = tmp_path_factory.mktemp("tiny")
    return {
        "data": write_tiny_eccv16(folder / "eccv16_dataset_summe_tiny.h5"),
        "splits": write_splits(folder / "SumMe_tiny_splits.txt",
                               [([1, 2, 3, 4], [5, 6]), ([3, 4, 5, 6], [1, 2]), ([1, 2, 3], [6])]),
    }


@pytest.fixture()
def stand_in(monkeypatch):
    """Training builds the fast :class:`support.StandIn` instead of CSTA."""
    from csta_lib.runs import training

    monkeypatch.setattr(training, "build_model", lambda config, weights=None: StandIn(config, weights))



@pytest.fixture()
def fake_measure(monkeypatch, tmp_path):
    """The grid's per-step measurements without training (1 ms per step and video step, so longer videos cost
    more), each call recorded in the returned list; the measurement cache in ``tmp_path``."""
    import torch

    from csta_lib.runs import cost

    calls = []

    def measure(config, length, device="cpu", steps=cost.CALIBRATION_STEPS):
        calls.append((cost.config_digest(config), length, torch.get_num_threads()))
        return cost.StepTime(0.001 * length, 0.0003 * length, 0.5, torch.get_num_threads(), "measured", 0.1,
                             "2026-01-01T00:00:00Z")

    monkeypatch.setattr(cost, "measure_step", measure)
    monkeypatch.setattr(cost, "DEFAULT_CACHE_DIR", tmp_path / "grid-cost")
    return calls
