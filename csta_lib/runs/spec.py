"""What defines a training run: the :class:`RunSpec` a user writes and the :class:`PreparedRun` it becomes once
:func:`csta_lib.runs.training.prepare` has checked it and loaded its data (book method page, method-loss)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csta_lib.config import ModelConfig
from csta_lib.data.eccv16 import Eccv16Dataset
from csta_lib.data.splits import Split
from csta_lib.runs.store import POLICIES
from csta_lib.train import PAPER_EPOCHS, PAPER_LR, PAPER_WEIGHT_DECAY

#: The validation fraction when the ``val`` policy is requested and none is given: 4 of SumMe's 20 training
#: videos, 8 of TVSum's 40.
DEFAULT_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Numerics:
    """A run's floating-point settings on CUDA: the one switch ``RunSpec.numerics`` (``csta train --numerics``).

    Both settings are deterministic: cuDNN's deterministic algorithms without autotuning, torch's deterministic
    algorithms (warning, not failing, where an operation has none) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` for
    cuBLAS, so that a run's content key determines its results on one kind of GPU. ``tf32``: TF32 tensor-core
    arithmetic (10-bit mantissa) for float32 matrix products and convolutions on Ampere or newer GPUs: faster,
    further from the official float32 numbers. On the CPU torch computes in IEEE float32 either way; the name
    is still part of the content key.
    """

    name: str
    tf32: bool
    deterministic: bool = True


#: ``exact`` (the default): IEEE float32 everywhere, for fidelity; ``fast``: TF32 on CUDA, for speed.
NUMERICS = {"exact": Numerics("exact", tf32=False), "fast": Numerics("fast", tf32=True)}


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (defaults: book method page, method-loss).

    ``preset`` names a :data:`csta_lib.config.PRESETS` entry; ``config`` (a ``ModelConfig`` or its dict), when
    given, replaces it and ``preset`` is then only the label (``None`` → ``custom``); ``overrides`` (pairs of
    ``ModelConfig`` field and value) change single switches of either. ``dataset`` may be None
    when ``data_path`` or ``splits_file`` tells it. ``data_path`` None uses the located real eccv16 file or the
    cached surrogate (:func:`csta_lib.runs.surrogate.resolve_features`); ``splits_file`` None uses the official CSTA
    splits.
    ``split`` is 0-based. ``val_fraction`` None means 0.2 if the ``val`` policy is requested, else 0.
    ``device`` None means CUDA if available, else CPU; ``numerics`` names the floating-point settings
    (:data:`NUMERICS`: ``exact`` or ``fast``). ``cnn_weights`` initialises the CNN trunk: ``"auto"``
    (torchvision's ImageNet file when the data locator finds it, as the official code; else random init, which
    the record labels), ``"imagenet"`` (required), None (random init), or a weight name/path accepted by
    :func:`csta_lib.model.build_model`. ``init_checkpoint`` starts from a checkpoint's weights
    (its config must equal this run's). ``resume_every`` (epochs between resume snapshots) does not change
    results and is not part of the content address.
    """

    preset: str | None = "paper"
    dataset: str | None = None
    split: int = 0
    seed: int = 0
    epochs: int = PAPER_EPOCHS
    config: Any = None
    overrides: tuple[tuple[str, Any], ...] = ()
    data_path: str | Path | None = None
    splits_file: str | Path | None = None
    policies: tuple[str, ...] = POLICIES
    val_fraction: float | None = None
    lr: float = PAPER_LR
    weight_decay: float = PAPER_WEIGHT_DECAY
    device: str | None = None
    numerics: str = "exact"
    cnn_weights: str | None = "auto"
    init_checkpoint: str | None = None
    resume_every: int = 5

    @property
    def variant(self) -> str:
        """The model's label: the preset name plus any overrides (``paper+skip_norm=layernorm``)."""
        return (self.preset or "custom") + "".join(f"+{k}={v}" for k, v in self.overrides)

    def resolved_val_fraction(self) -> float:
        """The validation fraction actually used (see the class docstring)."""
        if self.val_fraction is None:
            return DEFAULT_VAL_FRACTION if "val" in self.policies else 0.0
        return float(self.val_fraction)


@dataclass(frozen=True, eq=False)
class PreparedRun:
    """A validated :class:`RunSpec` with its data loaded, its keys fixed and its content address computed."""

    spec: RunSpec
    preset: str | None
    config: ModelConfig
    data: Eccv16Dataset
    split: Split
    train_keys: tuple[str, ...]
    val_keys: tuple[str, ...]
    test_keys: tuple[str, ...]
    val_fraction: float
    policies: tuple[str, ...]
    device: str
    threads: int
    protocol: str
    cnn_weights: str | None
    identity: dict[str, Any]
    key: str
    init_state: Mapping[str, Any] | None
