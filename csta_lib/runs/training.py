"""One training run of CSTA as the official code trains it, with honest model selection.

Specified on the book's method page, sections method-loss and method-selection.

A run is described by a :class:`RunSpec` (preset, dataset, split, seed, epochs, selection settings) and executed by
:func:`run`, which returns the run record (a JSON-able dict) and writes it atomically into a results store
(:mod:`csta_lib.runs.store`). A run whose record is already stored is returned without recomputation.

The official protocol: Adam (lr 1e-3, weight decay 1e-7 as coupled L2, default betas), MSE between the (T,)
predictions and the h5 ``gtscore``, one whole video per optimizer step in shuffled order, 100 epochs, a fresh
model per split, evaluation on the split's test videos after every epoch.

Model selection (all three policies come from the SAME run and the same per-epoch evaluations):

``test-max``
    What the official code does: the last epoch at which the mean τ AND the mean ρ over the **test** videos
    both improved strictly on the best so far (both start at −1; a NaN never improves). This selects on the
    test split and is labelled so wherever it is shown.
``val``
    The same joint rule applied to a validation subset carved from the training videos (``val_fraction`` of
    them, chosen deterministically from the seed); the test split is only scored.
``last``
    The final epoch.

**Training set.** With ``val_fraction > 0`` (default 0.2 when the ``val`` policy is requested: 4 of SumMe's 20
training videos, 8 of TVSum's 40) the model trains on the training videos *minus* the validation subset, for
every policy, so the three policies differ only in the epoch they pick. ``val_fraction = 0`` trains on exactly
the official training set (the paper's protocol) and offers only ``test-max`` and ``last``. The record states
the training, validation and test keys it used.

Determinism: one seed sets Python's, numpy's and torch's RNGs; on CPU the same seed gives bit-identical records
(wall times aside). An interrupted run resumes from its ``resume.pt`` (model, optimizer, RNG states and the
metrics so far) and ends with exactly the uninterrupted result.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import platform
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from csta_lib.runs import store
from csta_lib.errors import ConfigError, CstaInputError, DataFormatError, first_line
from csta_lib.train import PAPER_EPOCHS, PAPER_LR, PAPER_WEIGHT_DECAY, make_optimizer, training_step

if TYPE_CHECKING:
    import torch

#: Bump when a change to the training code *or the model's numerics* changes the results of a run (it is part of
#: every content address, so stored runs of older code are not reused as if this code had produced them).
#: 2: fused Adam and the fused/rewritten trunk kernels (results differ from 1 at float-rounding level).
TRAIN_CODE_VERSION = 2
CHECKPOINT_FORMAT = "csta-checkpoint/1"
#: 2: only tensors and plain data (loads with weights_only=True); RNG states as tensors and numbers.
RESUME_FORMAT = "csta-resume/2"
POLICIES = store.POLICIES
DEFAULT_VAL_FRACTION = 0.2
MAX_LIST_VALUES = 10_000  # splits or seeds one command may name ("0-10**12" would exhaust memory)
MAX_SEED = 2**64 - 1  # torch.manual_seed's largest seed
#: What each policy looks at to choose its epoch (written into every selection of a record).
SELECTED_ON = {"test-max": "test split (the official code's rule; leaky)", "val": "validation subset",
               "last": "nothing (final epoch)"}

EpochCallback = Callable[[int, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------------------------
# the specification of a run


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (defaults: book method page, method-loss).

    ``preset`` names a :data:`csta_lib.config.PRESETS` entry; ``config`` (a ``ModelConfig`` or its dict), when
    given, replaces it and ``preset`` is then only the label (``None`` → ``custom``); ``overrides`` (pairs of
    ``ModelConfig`` field and value) change single switches of either. ``dataset`` may be None
    when ``data_path`` or ``splits_file`` tells it. ``data_path`` None uses the located real eccv16 file or the
    cached surrogate (:func:`csta_lib.runs.surrogate.resolve_features`); ``splits_file`` None uses the official CSTA splits.
    ``split`` is 0-based. ``val_fraction`` None means 0.2 if the ``val`` policy is requested, else 0.
    ``device`` None means CUDA if available, else CPU. ``cnn_weights`` initialises the CNN trunk: ``"auto"``
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
    config: Any  # ModelConfig
    data: Any  # csta_lib.data.eccv16.Eccv16Dataset
    split: Any  # csta_lib.data.splits.Split
    train_keys: tuple[str, ...]
    val_keys: tuple[str, ...]
    test_keys: tuple[str, ...]
    val_fraction: float
    policies: tuple[str, ...]
    device: str
    protocol: str
    cnn_weights: str | None
    identity: dict[str, Any]
    key: str
    init_state: Mapping[str, Any] | None


# ---------------------------------------------------------------------------------------------------------------
# small pure pieces: seeds, validation carving, selection


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global RNGs from one integer."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def carve_validation(train_keys: Sequence[str], fraction: float, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split training keys into (kept for training, validation), deterministically from ``seed``.

    ``round(fraction · n)`` videos (at least one when ``fraction > 0``) are drawn without replacement by a
    numpy generator seeded with ``seed`` alone, so the subset depends only on the seed and the split's keys. Both
    parts keep the order of ``train_keys``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    n = len(train_keys)
    if fraction == 0.0:
        return tuple(train_keys), ()
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise ConfigError(f"val_fraction {fraction} leaves no training video out of {n}")
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    keep = tuple(k for i, k in enumerate(train_keys) if i not in chosen)
    val = tuple(k for i, k in enumerate(train_keys) if i in chosen)
    return keep, val


def select_joint_improvement(taus: Sequence[float], rhos: Sequence[float]) -> int | None:
    """1-based epoch chosen by the official rule: the last epoch where τ and ρ both beat the best so far.

    Both bests start at −1 and the comparison is strict, so a NaN (an undefined correlation) never improves
    (method page, method-selection and method-metrics). Returns None if no epoch ever improved.
    """
    best_tau = best_rho = -1.0
    chosen = None
    for epoch, (tau, rho) in enumerate(zip(taus, rhos, strict=True), start=1):
        if tau > best_tau and rho > best_rho:
            best_tau, best_rho, chosen = tau, rho, epoch
    return chosen


def select_epochs(history: Sequence[Mapping[str, Any]], policies: Sequence[str]) -> dict[str, int | None]:
    """The epoch each policy selects given the per-epoch metrics so far (1-based; None: nothing selected)."""
    chosen: dict[str, int | None] = {}
    for policy in policies:
        if policy == "last":
            chosen[policy] = len(history) or None
        else:
            prefix = "test" if policy == "test-max" else "val"
            chosen[policy] = select_joint_improvement(
                [e[f"{prefix}_tau"] for e in history], [e[f"{prefix}_rho"] for e in history])
    return chosen


def parse_int_list(text: str, *, name: str, all_values: Sequence[int] | None = None) -> list[int]:
    """Parse ``"0-4"``, ``"0,2,3"``, ``"1-2,5"`` or ``"all"`` (when ``all_values`` is given) into integers."""
    text = str(text).strip()
    if text == "all":
        if all_values is None:
            raise CstaInputError(f"{name}: 'all' is not allowed here")
        return list(all_values)
    values: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                if hi_i - lo_i >= MAX_LIST_VALUES:
                    raise CstaInputError(f"{name}: {text!r} names more than {MAX_LIST_VALUES} values")
                values.extend(range(lo_i, hi_i + 1))
            else:
                values.append(int(part))
    except CstaInputError:
        raise
    except ValueError:
        raise CstaInputError(f"{name}: cannot read {text!r}; use e.g. 0-4, 0,2,3 or all") from None
    return values


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


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
    import torch

    from csta_lib.runs.io import atomic_path

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


def safe_torch_load(path: Path, what: str, map_location: str = "cpu", *, hint: str = "") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``): never unpickles objects.

    Anything else (a pickled object, which could run code when loaded; a corrupt or foreign file) raises
    :class:`DataFormatError` naming the file, before any object is built. Torch's warnings and its multi-page
    explanations are kept out of the one-line message.
    """
    import pickle
    import warnings

    import torch

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


def load_checkpoint(path: str | Path, map_location: str = "cpu", *, expected_config: Any = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode: ``(model, checkpoint dict)``.

    With ``expected_config`` (a preset name or ``ModelConfig``), a checkpoint of another configuration raises
    :class:`ConfigError` naming the switches that differ.
    """
    from csta_lib.config import ModelConfig, get_config
    from csta_lib.model import build_model

    payload = read_checkpoint(path, map_location)
    config = ModelConfig.from_dict(payload["config"])
    if expected_config is not None:
        check_checkpoint_config(path, payload, get_config(expected_config))
    import torch

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


def check_checkpoint_config(path: str | Path, payload: Mapping[str, Any], config: Any) -> None:
    """Raise :class:`ConfigError` if a checkpoint was not made with ``config``."""
    theirs = payload["config"]
    ours = config.to_dict()
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if diff or set(theirs) != set(ours):
        details = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"{path}: checkpoint of preset {payload.get('preset')!r} does not match this run's "
                          f"model config ({details or 'different fields'})")


# ---------------------------------------------------------------------------------------------------------------
# preparing a run: every check before training starts


THREADS_ENV = "CSTA_NUM_THREADS"


def configure_threads() -> int:
    """Apply the CPU thread policy and return torch's thread count.

    ``CSTA_NUM_THREADS=N`` in the environment sets N threads; otherwise torch's default stays (one per
    core, or ``OMP_NUM_THREADS``). The count is never chosen from the machine's current load: results may
    differ at float rounding level between thread counts, and a run must not depend on what else runs.
    On a shared, busy machine ``CSTA_NUM_THREADS=1`` is much faster (threads that wait for each other
    at every operation lose their time slices; measured 4x slower with 2 threads on 2 busy cores).
    """
    import os

    import torch

    value = os.environ.get(THREADS_ENV)
    if value is not None:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ConfigError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def resolve_device(device: str | None) -> str:
    """``cuda`` if available when None; an unavailable or unknown device is a :class:`ConfigError`."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} ({exc})") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return str(device)


def _resolve_config(spec: RunSpec) -> tuple[str | None, Any]:
    from csta_lib.config import ModelConfig, get_config

    if spec.config is None:
        if spec.preset is None:
            raise ConfigError("a run needs a preset or a config")
        config = get_config(spec.preset)
    elif isinstance(spec.config, Mapping):
        config = ModelConfig.from_dict(dict(spec.config))
    else:
        config = get_config(spec.config)
    if spec.overrides:
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = [k for k, _ in spec.overrides if k not in known]
        if unknown:
            raise ConfigError(f"unknown ModelConfig switch {unknown[0]!r} in overrides; known: {sorted(known)}")
        config = config.replace(**dict(spec.overrides))
    return spec.preset, config


def _load_data(spec: RunSpec) -> tuple[Any, Any]:
    """(dataset, list of splits) for a spec; the dataset name is taken from the spec, the files or both."""
    from csta_lib.data import eccv16, splits

    dataset = eccv16.check_dataset(spec.dataset) if spec.dataset is not None else None
    split_list = None
    if spec.splits_file is not None:
        split_list = splits.load_splits(spec.splits_file, dataset)
        dataset = dataset or split_list[0].dataset
    if spec.data_path is not None:
        data = eccv16.load_eccv16(spec.data_path, dataset)
    else:
        if dataset is None:
            raise ConfigError("no dataset given: pass dataset ('summe' or 'tvsum') or a data file")
        from csta_lib.runs.surrogate import resolve_features

        data = eccv16.load_eccv16(resolve_features(dataset), dataset)
    if split_list is None:
        split_list = splits.official_splits(data.dataset)
    if split_list[0].dataset != data.dataset:
        raise ConfigError(f"split file is for {split_list[0].dataset} but the data file {data.path} is {data.dataset}")
    return data, split_list


def available_splits(spec: RunSpec) -> list[Any]:
    """The splits a spec's split file (or the official CSTA splits of its dataset) defines."""
    return _load_data(spec)[1]


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, stamp: tuple[int, int]) -> str:
    from csta_lib.runs.locator import sha256_file

    return sha256_file(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, cached while the file is unchanged (weights are hashed once per process)."""
    stat = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), (stat.st_mtime_ns, stat.st_size))


def resolve_cnn_weights(weights: str | None, backbone: str) -> tuple[str | None, str | None]:
    """(weights argument for ``build_model``, sha256 of the weight file) for a spec's ``cnn_weights``.

    ``"auto"`` becomes ``"imagenet"`` when torchvision's ImageNet file for ``backbone`` is found, else None
    (random init). A missing required file raises :class:`~csta_lib.errors.MissingDataError` before training.
    """
    from csta_lib.backbones import resolve_weights_file
    from csta_lib.runs import locator

    if weights == "auto":
        weights = "imagenet" if locator.find(f"weights.torchvision.{backbone}") is not None else None
    if weights is None:
        return None, None
    return str(weights), file_sha256(resolve_weights_file(backbone, weights))


def prepare(spec: RunSpec) -> PreparedRun:
    """Validate a spec and load what it needs; every bad input fails here, before any training."""
    from csta_lib import __version__
    from csta_lib.evaluation import PAPER_PROTOCOL

    if not isinstance(spec.epochs, int) or isinstance(spec.epochs, bool) or spec.epochs <= 0:
        raise ConfigError(f"epochs must be a positive integer, got {spec.epochs!r}")
    if not isinstance(spec.seed, int) or isinstance(spec.seed, bool) or not 0 <= spec.seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to 2**64-1 (torch's range), got {spec.seed!r}")
    unknown = [p for p in spec.policies if p not in POLICIES]
    if unknown or not spec.policies:
        raise ConfigError(f"unknown selection policy {unknown[0] if unknown else '(none)'!r}; known: {', '.join(POLICIES)}")
    if spec.resume_every < 1:
        raise ConfigError(f"resume_every must be >= 1, got {spec.resume_every}")
    if not (spec.lr > 0 and spec.weight_decay >= 0):
        raise ConfigError(f"lr must be > 0 and weight_decay >= 0 (got {spec.lr}, {spec.weight_decay})")
    policies = tuple(p for p in POLICIES if p in spec.policies)
    val_fraction = spec.resolved_val_fraction()
    if "val" in policies and val_fraction <= 0:
        raise ConfigError("the 'val' policy needs val_fraction > 0 (a validation subset of the training videos)")
    preset, config = _resolve_config(spec)
    device = resolve_device(spec.device)
    data, split_list = _load_data(spec)
    if not isinstance(spec.split, int) or not 0 <= spec.split < len(split_list):
        raise ConfigError(f"split {spec.split!r} does not exist: {split_list[0].source} has splits "
                          f"0 … {len(split_list) - 1} (0-based)")
    split = split_list[spec.split].validate(data.keys(), where=str(data.path))
    foreign = [k for k in split.keys if "/" in k]
    if foreign:
        raise DataFormatError(f"split {spec.split} of {split.source} names videos of another dataset "
                              f"({', '.join(foreign[:3])}); use a canonical split file")
    train_keys, val_keys = carve_validation(split.train_keys, val_fraction, spec.seed)
    cnn_weights, weights_digest = resolve_cnn_weights(spec.cnn_weights, config.backbone)
    init_state, init_digest = None, None
    if spec.init_checkpoint is not None:
        payload = read_checkpoint(spec.init_checkpoint)
        check_checkpoint_config(spec.init_checkpoint, payload, config)
        init_state, init_digest = payload["state_dict"], file_sha256(spec.init_checkpoint)
    identity = {
        "code": {"csta_lib": __version__, "train": TRAIN_CODE_VERSION},
        "config": config.to_dict(),
        "dataset": data.dataset,
        "data_sha256": data.sha256,
        "split": {"train": list(split.train_keys), "test": list(split.test_keys)},
        "seed": spec.seed,
        "epochs": spec.epochs,
        "selection": {"policies": list(policies), "val_fraction": val_fraction},
        "optimizer": {"lr": spec.lr, "weight_decay": spec.weight_decay},
        "cnn_weights_sha256": weights_digest,
        "init_checkpoint_sha256": init_digest,
    }
    return PreparedRun(
        spec=spec, preset=preset, config=config, data=data, split=split, train_keys=train_keys, val_keys=val_keys,
        test_keys=tuple(split.test_keys), val_fraction=val_fraction, policies=policies, device=device,
        protocol=PAPER_PROTOCOL[data.dataset], cnn_weights=cnn_weights, identity=identity, key=store.content_key(identity),
        init_state=init_state,
    )


def prepared_record_path(prep: PreparedRun, store_dir: str | Path) -> Path:
    """Where the record of a prepared run lives in ``store_dir``."""
    return store.record_path(store_dir, prep.data.dataset, prep.spec.variant, prep.key)


def lookup(spec: RunSpec, store_dir: str | Path) -> dict[str, Any] | None:
    """The stored record of ``spec`` if this exact run was completed before, else None (also when the stored
    record is damaged: a warning says so, and :func:`run` retrains and replaces it)."""
    return _stored_record(store_dir, prepare(spec))


# ---------------------------------------------------------------------------------------------------------------
# evaluation adapter


def make_scorer(prep: PreparedRun) -> Callable[[Mapping[str, np.ndarray]], dict[str, dict[str, float]]]:
    """A function ``{key: (T,) scores} → {key: {"tau", "rho", "f1"}}`` under the dataset's paper protocol.

    References (user summaries, per-user TVSum scores, shots) are prepared once by the evaluation module's
    :class:`~csta_lib.evaluation.DatasetEvaluator`; each call only scores.
    """
    from csta_lib.evaluation import DatasetEvaluator

    evaluator = DatasetEvaluator(prep.data, protocol=prep.protocol)

    def score(predictions: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
        results = evaluator.evaluate(predictions)
        return {k: {m: float(r[m]) for m in ("tau", "rho", "f1")} for k, r in results.items()}

    return score


# ---------------------------------------------------------------------------------------------------------------
# the training loop


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values only (so snapshots load with ``weights_only=True``)."""
    import torch

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
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_entry(epoch: int, loss: float, seconds: float, eval_seconds: float,
                 test: Mapping[str, Mapping[str, float]], val: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    from csta_lib.evaluation import mean_metrics

    entry: dict[str, Any] = {"epoch": epoch, "train_loss": loss}
    for prefix, part in (("test", test), ("val", val)):
        if part:  # plain means: an undefined (NaN) video makes the split mean NaN, as in the official code
            means = mean_metrics(part)
            for metric in ("tau", "rho", "f1"):
                entry[f"{prefix}_{metric}"] = means[metric]
    entry["seconds"] = seconds
    entry["eval_seconds"] = eval_seconds
    return entry


def _features_info(prep: PreparedRun) -> dict[str, Any]:
    return {
        "encoder": "surrogate" if prep.data.is_surrogate else "eccv16_googlenet_pool5",
        "surrogate": bool(prep.data.is_surrogate),
        "imagenet_weights": prep.cnn_weights,
    }


def _save_resume(path: Path, prep: PreparedRun, model: Any, optimizer: Any, shuffle: Any,
                 history: list[dict[str, Any]], per_video: list[dict[str, Any]], elapsed: float) -> None:
    import torch

    from csta_lib.runs.io import atomic_path

    payload = {
        "format": RESUME_FORMAT, "key": prep.key, "epoch": len(history), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": _rng_state(), "shuffle": shuffle.get_state(),
        "history": history, "per_video": per_video, "elapsed": float(elapsed),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


#: What a resume snapshot holds, with the type of each entry (checked after the safe load, before use).
RESUME_FIELDS = {"format": str, "key": str, "epoch": int, "model": Mapping, "optimizer": Mapping, "rng": Mapping,
                 "history": list, "per_video": list, "elapsed": float}


def _load_resume(path: Path, prep: PreparedRun) -> dict[str, Any] | None:
    """The run's resume snapshot, or None if there is none.

    Loaded with ``weights_only=True`` only (tensors and plain containers): a snapshot holding anything else is
    refused with :class:`DataFormatError` (exit 2, "delete it to restart the run") and nothing in it is built or
    run. So is a snapshot of another run, of an older format, or with missing or mistyped entries.
    """
    import torch

    if not path.is_file():
        return None
    payload = safe_torch_load(path, f"{RESUME_FORMAT} resume snapshot", hint="; delete it to restart the run")
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise DataFormatError(f"{path}: not a {RESUME_FORMAT} resume snapshot (an older format or another file); "
                              "delete it to restart the run")
    if payload.get("key") != prep.key:
        raise DataFormatError(f"{path}: resume snapshot of another run (expected key {prep.key}); delete it")
    wrong = [name for name, kind in RESUME_FIELDS.items() if not isinstance(payload.get(name), kind)]
    if not wrong and not isinstance(payload.get("shuffle"), torch.Tensor):
        wrong = ["shuffle"]
    if wrong or payload["epoch"] != len(payload["history"]) or len(payload["history"]) != len(payload["per_video"]):
        raise DataFormatError(f"{path}: damaged resume snapshot ({', '.join(wrong) or 'epoch counts disagree'}); "
                              "delete it to restart the run")
    return payload


def _epoch_file(ckpt_dir: Path, epoch: int) -> Path:
    return ckpt_dir / f"epoch_{epoch:03d}.pt"


def _prune(ckpt_dir: Path, keep_epochs: set[int]) -> None:
    """Delete checkpoints of epochs no policy selects any more."""
    for path in ckpt_dir.glob("epoch_*.pt"):
        if int(path.stem.split("_")[1]) not in keep_epochs:
            path.unlink(missing_ok=True)


def train_loop(
    prep: PreparedRun,
    ckpt_dir: Path,
    *,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    scorer: Callable[[Mapping[str, np.ndarray]], dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """Train one run, saving the selected epochs' checkpoints into ``ckpt_dir``; return the loop's results.

    The result dict holds ``history`` (per-epoch means), ``per_video`` (per-epoch per-video test/val metrics),
    ``chosen`` (epoch per policy), ``seconds`` and ``resumed_from`` (the epoch restarted from, or None).
    """
    import torch
    from tqdm.auto import tqdm

    from csta_lib.model import build_model

    configure_threads()
    spec, device = prep.spec, torch.device(prep.device)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    seed_everything(spec.seed)
    model = build_model(prep.config, weights=prep.cnn_weights).to(device)
    if prep.init_state is not None:
        model.load_state_dict(prep.init_state)
    optimizer = make_optimizer(model.parameters(), spec.lr, spec.weight_decay)
    shuffle = torch.Generator().manual_seed(spec.seed)
    score = scorer or make_scorer(prep)

    # Features and targets go to the device once; the loop never touches files.
    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(array, dtype=np.float32), device=device)

    eval_keys = list(prep.val_keys) + list(prep.test_keys)
    inputs = {k: tensor(prep.data[k].features) for k in (*prep.train_keys, *eval_keys)}
    targets = {k: tensor(prep.data[k].gtscore) for k in prep.train_keys}

    resume_file = ckpt_dir / "resume.pt"  # the folder is created by the first file written into it
    history: list[dict[str, Any]] = []
    per_video: list[dict[str, Any]] = []
    elapsed, resumed_from = 0.0, None
    snapshot = _load_resume(resume_file, prep)
    if snapshot is not None:
        try:
            model.load_state_dict(snapshot["model"])
            optimizer.load_state_dict(snapshot["optimizer"])
            _set_rng_state(snapshot["rng"])
            shuffle.set_state(snapshot["shuffle"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            first = first_line(exc)
            raise DataFormatError(f"{resume_file}: damaged resume snapshot ({first}); "
                                  "delete it to restart the run") from None
        history, per_video, elapsed = snapshot["history"], snapshot["per_video"], snapshot["elapsed"]
        resumed_from = len(history)
    features_info = _features_info(prep)
    chosen = select_epochs(history, prep.policies)

    bar = tqdm(total=spec.epochs, initial=len(history), disable=not progress, leave=False,
               desc=f"{prep.data.dataset} {spec.variant} split {spec.split} seed {spec.seed}")
    for epoch in range(len(history) + 1, spec.epochs + 1):
        start = time.perf_counter()
        model.train()
        losses = []
        for index in torch.randperm(len(prep.train_keys), generator=shuffle).tolist():
            key = prep.train_keys[index]
            losses.append(training_step(model, optimizer, inputs[key], targets[key]))
        train_loss = float(torch.stack(losses).mean())

        eval_start = time.perf_counter()
        model.eval()
        with torch.inference_mode():
            predictions = {k: model(inputs[k]).float().cpu().numpy() for k in eval_keys}
        metrics = score(predictions)
        test = {k: metrics[k] for k in prep.test_keys}
        val = {k: metrics[k] for k in prep.val_keys}
        now = time.perf_counter()
        history.append(_epoch_entry(epoch, train_loss, now - start, now - eval_start, test, val))
        per_video.append({"test": test, "val": val})
        elapsed += now - start

        chosen = select_epochs(history, prep.policies)
        final = epoch == spec.epochs
        # Selected epochs get a file when chosen; the last epoch once training ends (for "last", and as the
        # reported fallback of a policy that never selected an epoch, see _selected_entry).
        keep = {e for p, e in chosen.items() if e is not None and p != "last"}
        if final and ("last" in chosen or None in chosen.values()):
            keep.add(epoch)
        if epoch in keep:
            meta = {"run_key": prep.key, "preset": prep.preset, "dataset": prep.data.dataset, "split": spec.split,
                    "seed": spec.seed, "epoch": epoch, "policies": [p for p, e in chosen.items() if e == epoch],
                    "test_tau": history[-1].get("test_tau"), "test_rho": history[-1].get("test_rho")}
            save_checkpoint(_epoch_file(ckpt_dir, epoch), model, features_info, meta,
                            preset=prep.preset, config=prep.config)
        if epoch % spec.resume_every == 0 or final:
            _save_resume(resume_file, prep, model, optimizer, shuffle, history, per_video, elapsed)
            _prune(ckpt_dir, keep)
        bar.set_postfix(loss=f"{train_loss:.4f}", tau=f"{history[-1]['test_tau']:.3f}",
                        rho=f"{history[-1]['test_rho']:.3f}")
        bar.update(1)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    bar.close()
    return {"history": history, "per_video": per_video, "chosen": chosen, "seconds": elapsed,
            "resumed_from": resumed_from, "features": features_info}


# ---------------------------------------------------------------------------------------------------------------
# the record


def library_versions() -> dict[str, str]:
    """Versions that can change a run's numbers."""
    import scipy
    import torch

    from csta_lib import __version__

    return {"csta_lib": __version__, "train_code": str(TRAIN_CODE_VERSION), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


def device_description(device: str) -> str:
    """The device in words (GPU name for CUDA, the CPU architecture otherwise)."""
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _selected_entry(policy: str, epoch: int | None, history: Sequence[Mapping[str, Any]],
                    per_video: Sequence[Mapping[str, Any]], ckpt_rel: str) -> dict[str, Any]:
    fallback = epoch is None
    if fallback:  # no epoch ever improved both means (all NaN): report the last epoch, flagged
        epoch = len(history)
    entry = history[epoch - 1]
    out = {"epoch": epoch, "test_tau": entry["test_tau"], "test_rho": entry["test_rho"],
           "test_f1": entry["test_f1"], "checkpoint": f"{ckpt_rel}/{_epoch_file(Path(), epoch).name}",
           "selected_on": SELECTED_ON[policy]}
    if "val_tau" in entry:
        out.update(val_tau=entry["val_tau"], val_rho=entry["val_rho"], val_f1=entry["val_f1"])
    out["per_video"] = per_video[epoch - 1]["test"]
    if fallback:
        out["note"] = f"no epoch improved both mean tau and rho for policy {policy}; the last epoch is reported"
    return out


def build_record(prep: PreparedRun, loop: Mapping[str, Any], record_file: Path, wall: float) -> dict[str, Any]:
    """The JSON run record.

    Keys: ``format``, ``key`` (content address), ``preset``, ``variant``, ``overrides``, ``dataset``, ``split``
    (``index`` 0-based, ``source``, ``train_keys`` actually trained on, ``val_keys``, ``test_keys``,
    ``official_train_keys``), ``seed``, ``n_epochs``, ``config`` (ModelConfig dict), ``training`` (optimiser,
    loss, batching), ``selection`` (policies, ``val_fraction``, what was trained on, the rule, labels),
    ``protocol`` (``rank``: the τ/ρ protocol; F1), ``provenance`` (``surrogate``, ``encoder``,
    ``imagenet_weights``, ``cnn_init``, data file and sha256, the dataset's own provenance, splits file),
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
        "protocol": {"rank": prep.protocol, "f1": "15% knapsack on KTS shots vs user summaries"},
        "provenance": {**loop["features"],
                       "cnn_init": f"weights {prep.cnn_weights}" if prep.cnn_weights else "random (no ImageNet weights)",
                       "data_file": str(data.path), "data_sha256": data.sha256,
                       "data_label": data.label, "data": data.provenance,
                       "splits_file": spec.splits_file or "official CSTA splits"},
        "epochs": loop["history"],
        "selected": {p: _selected_entry(p, loop["chosen"][p], loop["history"], loop["per_video"], ckpt_rel)
                     for p in prep.policies},
        "wall_time_s": wall,
        "train_time_s": loop["seconds"],
        "resumed_from_epoch": loop["resumed_from"],
        "device": device_description(prep.device),
        "deterministic": prep.device == "cpu",
        "versions": library_versions(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _stored_record(store_dir: str | Path, prep: PreparedRun) -> dict[str, Any] | None:
    """The stored record of a prepared run, or None when there is none or it is damaged (a warning then says so:
    the run is retrained and its record replaced, which is what the content-addressed store is for)."""
    import warnings

    try:
        return store.find_record(store_dir, prep.data.dataset, prep.spec.variant, prep.key)
    except DataFormatError as exc:
        warnings.warn(f"{exc}: retraining the run to replace it", RuntimeWarning, stacklevel=3)
        return None


def _replace_checkpoints(staged: Path, ckpt_dir: Path) -> Path | None:
    """Move a forced rerun's checkpoint folder into place; return the previous folder (moved aside) to delete."""
    import os

    previous = ckpt_dir.with_name(f".{ckpt_dir.name}.replaced")
    if os.path.lexists(previous):
        _remove_tree(previous)
    if os.path.lexists(ckpt_dir):
        os.replace(ckpt_dir, previous)
    if staged.is_dir():
        os.replace(staged, ckpt_dir)
    return previous if os.path.lexists(previous) else None


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run(
    spec: RunSpec,
    store_dir: str | Path,
    progress: bool = True,
    *,
    force: bool = False,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train one run (or find it in the store) and return its record; the record is written atomically.

    ``force`` retrains even if the record exists. ``on_epoch(epoch, metrics)`` is called after each epoch (after
    its checkpoints are written), e.g. by grids for progress reports. The record gets ``_path`` (not stored).

    Nothing is created before training produces something to keep: folders appear with the first checkpoint or
    resume snapshot, so a run that fails early leaves no empty directories. A forced rerun (or the rerun of a
    damaged record) trains into a staging folder beside the old one and keeps the old record and its
    checkpoints until the new record is complete; if it dies, the old record still stands.
    """
    from csta_lib.runs.io import check_output_dir

    prep = prepare(spec)
    check_output_dir(store_dir, "results store")
    record_file = prepared_record_path(prep, store_dir)
    if record_file.is_file() and not force:
        found = _stored_record(store_dir, prep)
        if found is not None:
            return found
    ckpt_dir = store.checkpoint_dir(record_file)
    replacing = record_file.is_file()
    work_dir = ckpt_dir.with_name(f".{ckpt_dir.name}.staged") if replacing else ckpt_dir
    if replacing:  # start the new run from scratch: no snapshot of an earlier forced attempt
        _remove_tree(work_dir)
    start = time.perf_counter()
    loop = train_loop(prep, work_dir, progress=progress, on_epoch=on_epoch)
    record = build_record(prep, loop, record_file, time.perf_counter() - start)
    (work_dir / "resume.pt").unlink(missing_ok=True)
    previous = _replace_checkpoints(work_dir, ckpt_dir) if replacing else None
    store.write_record(record_file, record)
    (ckpt_dir / "resume.pt").unlink(missing_ok=True)
    if previous is not None:
        _remove_tree(previous)
    record["_path"] = str(record_file)
    return record


__all__ = [
    "POLICIES", "PreparedRun", "RunSpec", "build_record", "carve_validation", "check_checkpoint_config",
    "file_sha256", "library_versions", "load_checkpoint", "lookup", "make_scorer", "parse_int_list", "prepare", "read_checkpoint",
    "run", "save_checkpoint", "seed_everything", "select_epochs", "select_joint_improvement", "train_loop",
]
