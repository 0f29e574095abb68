"""One training run of CSTA as the official code trains it, with honest model selection.

Specified on the book's method page, sections method-loss and method-selection.

A run is described by a :class:`~csta_lib.runs.spec.RunSpec` (preset, dataset, split, seed, epochs, selection
settings), checked and loaded by :func:`prepare` and executed by :func:`run`, which returns the run record (a
JSON-able dict, :mod:`csta_lib.runs.record`) and writes it atomically into a results store
(:mod:`csta_lib.runs.store`). A run whose record is already stored is returned without recomputation.

The official protocol: Adam (lr 1e-3, weight decay 1e-7 as coupled L2, default betas), MSE between the (T,)
predictions and the h5 ``gtscore``, one whole video per optimizer step in shuffled order, 100 epochs, a fresh
model per split, evaluation on the split's test videos after every epoch (:func:`train_loop`).

Model selection: the ``test-max``, ``val`` and ``last`` policies (:mod:`csta_lib.runs.selection`) all come from
the SAME run and the same per-epoch evaluations. **Training set.** With ``val_fraction > 0`` (default 0.2 when
the ``val`` policy is requested: 4 of SumMe's 20 training videos, 8 of TVSum's 40) the model trains on the
training videos *minus* the validation subset, for every policy, so the three policies differ only in the epoch
they pick. ``val_fraction = 0`` trains on exactly the official training set (the paper's protocol) and offers
only ``test-max`` and ``last``. The record states the training, validation and test keys it used.

Determinism: one seed sets Python's, numpy's and torch's RNGs. A run's content key holds, besides its settings,
what else changes its numbers (:func:`numerics_identity`: torch's version, the device, on the CPU its kernel ISA
and the torch thread count, on CUDA the GPU model and the CUDA/cuDNN versions, and the ``numerics`` switch
applied by :func:`apply_numerics`), so that one key gives bit-identical records wherever it is computed (wall
times aside): a store is reused only where it reproduces. An interrupted run resumes from its ``resume.pt``
(model, optimizer, RNG states and the metrics so far, :mod:`csta_lib.runs.checkpoint`) and ends with exactly the
uninterrupted result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from csta_lib import __version__
from csta_lib.config import ModelConfig, get_config
from csta_lib.data import eccv16, splits
from csta_lib.errors import ConfigError, CstaInputError, DataFormatError
from csta_lib.evaluation import PAPER_PROTOCOL
from csta_lib.model import build_model
from csta_lib.runs import locator, store
from csta_lib.runs.checkpoint import (
    check_checkpoint_config,
    checkpoint_name,
    prune_checkpoints,
    read_checkpoint,
    restore_resume,
    resume_file,
    save_checkpoint,
    save_resume,
)
from csta_lib.runs.io import check_output_dir
from csta_lib.runs.record import build_record, epoch_entry, features_info
from csta_lib.runs.selection import carve_validation, epochs_to_keep, select_epochs
from csta_lib.runs.spec import NUMERICS, PreparedRun, RunSpec
from csta_lib.runs.surrogate import resolve_features
from csta_lib.train import make_optimizer, training_step

#: Bump when a change to the training code *or the model's numerics* changes the results of a run (it is part of
#: every content address, so stored runs of older code are not reused as if this code had produced them).
#: 2: fused Adam and the fused/rewritten trunk kernels (results differ from 1 at float-rounding level).
#: 3: GoogLeNet's stem on one channel of the equal-channel key image, 3x3 weight gradients as shifted matrix
#: products (float-rounding level); the key also holds the numerics (torch, device, CPU ISA and threads).
TRAIN_CODE_VERSION = 3
MAX_LIST_VALUES = 10_000  # splits or seeds one command may name ("0-10**12" would exhaust memory)
MAX_SEED = 2**64 - 1  # torch.manual_seed's largest seed
THREADS_ENV = "CSTA_NUM_THREADS"

EpochCallback = Callable[[int, dict[str, Any]], None]
Scorer = Callable[[Mapping[str, np.ndarray]], dict[str, dict[str, float]]]


# ---------------------------------------------------------------------------------------------------------------
# small pure pieces


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global RNGs from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


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
# preparing a run: every check before training starts


def run_threads() -> int:
    """The torch CPU threads a run trains with: ``CSTA_NUM_THREADS=N`` when set, else torch's current count
    (one per core, ``OMP_NUM_THREADS``, or what a grid set for its runs).

    The count is never chosen from the machine's current load: it changes the results at float-rounding level
    (the summation order of the convolutions' and BatchNorm's reductions), so it is part of the run's content
    key. On a shared, busy machine ``CSTA_NUM_THREADS=1`` is much faster (threads that wait for each other at
    every operation lose their time slices; measured 4x slower with 2 threads on 2 busy cores).
    """
    threads = env_threads()
    return torch.get_num_threads() if threads is None else threads


def env_threads() -> int | None:
    """``CSTA_NUM_THREADS`` as a thread count, None when unset; anything but a positive integer is a
    :class:`ConfigError`."""
    value = os.environ.get(THREADS_ENV)
    if value is None:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ConfigError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch limited to ``threads`` intra-op threads inside the block, the previous count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def numerics_identity(device: str, threads: int, numerics: str) -> dict[str, Any]:
    """Everything besides the run's own settings that changes its numbers (part of its content key).

    Always: torch's version, the device kind and the :data:`~csta_lib.runs.spec.NUMERICS` setting. On the CPU:
    the kernel ISA torch dispatches to (``AVX2``, ``AVX512``, ...) and the torch thread count, both of which
    change the summation order of reductions. On CUDA: the GPU model, its compute capability and the CUDA and
    cuDNN versions (the CPU threads then do not touch the numbers)."""
    if numerics not in NUMERICS:
        raise ConfigError(f"unknown numerics {numerics!r}; use one of: {', '.join(NUMERICS)}")
    kind = torch.device(device).type
    out: dict[str, Any] = {"torch": torch.__version__, "device": kind, "numerics": numerics}
    if kind == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        out.update(cpu_capability=torch.backends.cpu.get_cpu_capability(), threads=threads)
    return out


def apply_numerics(numerics: str, device: str) -> None:
    """Set torch's process-wide floating-point settings for a run on ``device`` (:class:`~csta_lib.runs.spec.Numerics`).

    On CUDA: ``CUBLAS_WORKSPACE_CONFIG`` (unless already set; cuBLAS reads it when the process first uses it),
    cuDNN deterministic without autotuning, torch's deterministic algorithms (warn-only), and IEEE float32 or
    TF32 for matrix products and convolutions. The CPU needs nothing: its float32 kernels are IEEE, and its
    summation order is fixed by the thread count (:func:`run_threads`)."""
    setting = NUMERICS[numerics]
    if torch.device(device).type != "cuda":
        return
    if setting.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = setting.deterministic
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(setting.deterministic, warn_only=True)
    precision = "tf32" if setting.tf32 else "ieee"
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)  # torch >= 2.9; the legacy flags must not be mixed in
    if cudnn_conv is not None and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = precision
        cudnn_conv.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = setting.tf32
        torch.backends.cudnn.allow_tf32 = setting.tf32


def resolve_device(device: str | None) -> str:
    """``cuda`` if available when None; an unavailable or unknown device is a :class:`ConfigError`."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} ({exc})") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return str(device)


def _resolve_config(spec: RunSpec) -> tuple[str | None, ModelConfig]:
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


def _load_data(spec: RunSpec) -> tuple[eccv16.Eccv16Dataset, list[splits.Split]]:
    """(dataset, list of splits) for a spec; the dataset name is taken from the spec, the files or both."""
    dataset = eccv16.check_dataset(spec.dataset) if spec.dataset is not None else None
    if dataset is None and spec.data_path is not None:  # a user dataset names itself (csta data build)
        dataset = eccv16.declared_dataset(spec.data_path)
    split_list = None
    if spec.splits_file is not None:
        split_list = splits.load_splits(spec.splits_file, dataset)
        dataset = dataset or split_list[0].dataset
    if spec.data_path is not None:
        data = eccv16.load_eccv16(spec.data_path, dataset)
    else:
        if dataset is None:
            raise ConfigError("no dataset given: pass dataset ('summe' or 'tvsum') or a data file")
        data = eccv16.load_eccv16(resolve_features(dataset), dataset)
    if split_list is None:
        if data.is_user:
            raise ConfigError(f"{data.path}: the user dataset {data.dataset} has no official splits; make folds with "
                              "`csta data split` and pass them as the splits file")
        split_list = locator.official_splits(data.dataset)
    if split_list[0].dataset != data.dataset:
        raise ConfigError(f"split file is for {split_list[0].dataset} but the data file {data.path} is {data.dataset}")
    return data, split_list


def available_splits(spec: RunSpec) -> list[splits.Split]:
    """The splits a spec's split file (or the official CSTA splits of its dataset) defines."""
    return _load_data(spec)[1]


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, stamp: tuple[int, int]) -> str:
    return locator.sha256_file(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, cached while the file is unchanged (weights are hashed once per process)."""
    stat = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), (stat.st_mtime_ns, stat.st_size))


def resolve_cnn_weights(weights: str | None, backbone: str) -> tuple[str | None, str | None]:
    """(weights label: "imagenet", a data name or a path; sha256 of the weight file) for a spec's ``cnn_weights``.

    ``"auto"`` becomes ``"imagenet"`` when torchvision's ImageNet file for ``backbone`` is found, else None
    (random init). A missing required file raises :class:`~csta_lib.errors.MissingDataError` before training.
    """
    if weights == "auto":
        weights = "imagenet" if locator.find(f"weights.torchvision.{backbone}") is not None else None
    if weights is None:
        return None, None
    return str(weights), file_sha256(locator.backbone_weights(backbone, weights))


def _check_settings(spec: RunSpec) -> tuple[str, ...]:
    """Check the spec's numbers and policies; return its policies in the canonical order."""
    if not isinstance(spec.epochs, int) or isinstance(spec.epochs, bool) or spec.epochs <= 0:
        raise ConfigError(f"epochs must be a positive integer, got {spec.epochs!r}")
    if not isinstance(spec.seed, int) or isinstance(spec.seed, bool) or not 0 <= spec.seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to 2**64-1 (torch's range), got {spec.seed!r}")
    unknown = [p for p in spec.policies if p not in store.POLICIES]
    if unknown or not spec.policies:
        raise ConfigError(f"unknown selection policy {unknown[0] if unknown else '(none)'!r}; "
                          f"known: {', '.join(store.POLICIES)}")
    if spec.resume_every < 1:
        raise ConfigError(f"resume_every must be >= 1, got {spec.resume_every}")
    if not (spec.lr > 0 and spec.weight_decay >= 0):
        raise ConfigError(f"lr must be > 0 and weight_decay >= 0 (got {spec.lr}, {spec.weight_decay})")
    policies = tuple(p for p in store.POLICIES if p in spec.policies)
    if "val" in policies and spec.resolved_val_fraction() <= 0:
        raise ConfigError("the 'val' policy needs val_fraction > 0 (a validation subset of the training videos)")
    return policies


def _select_split(spec: RunSpec, data: eccv16.Eccv16Dataset, split_list: Sequence[splits.Split]) -> splits.Split:
    """The spec's split, checked against the data file's videos."""
    if not isinstance(spec.split, int) or not 0 <= spec.split < len(split_list):
        raise ConfigError(f"split {spec.split!r} does not exist: {split_list[0].source} has splits "
                          f"0 … {len(split_list) - 1} (0-based)")
    split = split_list[spec.split].validate(data.keys(), where=str(data.path))
    foreign = [k for k in split.keys if "/" in k]
    if foreign:
        raise DataFormatError(f"split {spec.split} of {split.source} names videos of another dataset "
                              f"({', '.join(foreign[:3])}); use a canonical split file")
    return split


def _init_state(spec: RunSpec, config: ModelConfig) -> tuple[Mapping[str, Any] | None, str | None]:
    """(state dict, sha256) of the spec's ``init_checkpoint``, which must have been made with ``config``."""
    if spec.init_checkpoint is None:
        return None, None
    payload = read_checkpoint(spec.init_checkpoint)
    check_checkpoint_config(spec.init_checkpoint, payload, config)
    return payload["state_dict"], file_sha256(spec.init_checkpoint)


def prepare(spec: RunSpec) -> PreparedRun:
    """Validate a spec and load what it needs; every bad input fails here, before any training."""
    policies = _check_settings(spec)
    val_fraction = spec.resolved_val_fraction()
    preset, config = _resolve_config(spec)
    device = resolve_device(spec.device)
    threads = run_threads()
    numerics = numerics_identity(device, threads, spec.numerics)
    data, split_list = _load_data(spec)
    split = _select_split(spec, data, split_list)
    train_keys, val_keys = carve_validation(split.train_keys, val_fraction, spec.seed)
    cnn_weights, weights_digest = resolve_cnn_weights(spec.cnn_weights, config.backbone)
    init_state, init_digest = _init_state(spec, config)
    # The run's identity: everything that changes its results (its sha256 is the content address).
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
        "numerics": numerics,
    }
    return PreparedRun(
        spec=spec, preset=preset, config=config, data=data, split=split, train_keys=train_keys, val_keys=val_keys,
        test_keys=tuple(split.test_keys), val_fraction=val_fraction, policies=policies, device=device,
        threads=threads, protocol=PAPER_PROTOCOL[data.style], cnn_weights=cnn_weights, identity=identity,
        key=store.content_key(identity),
        init_state=init_state,
    )


def prepared_record_path(prep: PreparedRun, store_dir: str | Path) -> Path:
    """Where the record of a prepared run lives in ``store_dir``."""
    return store.record_path(store_dir, prep.data.dataset, prep.spec.variant, prep.key)


def lookup(spec: RunSpec, store_dir: str | Path) -> dict[str, Any] | None:
    """The stored record of ``spec`` if this exact run was completed before, else None (also when the stored
    record is damaged: a warning says so, and :func:`run` retrains and replaces it)."""
    return _stored_record(store_dir, prepare(spec))


def make_scorer(prep: PreparedRun) -> Scorer:
    """A function ``{key: (T,) scores} → {key: {"tau", "rho", "f1"}}`` under the dataset's paper protocol.

    References (user summaries, per-user TVSum scores, shots) are prepared once by the evaluation module's
    :class:`~csta_lib.evaluation.DatasetEvaluator`; each call only scores.
    """
    evaluator = locator.dataset_evaluator(prep.data, protocol=prep.protocol)

    def score(predictions: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
        results = evaluator.evaluate(predictions)
        return {k: {m: float(r[m]) for m in ("tau", "rho", "f1")} for k, r in results.items()}

    return score


# ---------------------------------------------------------------------------------------------------------------
# the training loop


def _fresh_start(prep: PreparedRun) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator]:
    """Seeded model, optimiser and shuffle generator of a run, in the order that fixes every random draw."""
    apply_numerics(prep.spec.numerics, prep.device)
    seed_everything(prep.spec.seed)
    weights = locator.backbone_weights(prep.config.backbone, prep.cnn_weights) if prep.cnn_weights else None
    model = build_model(prep.config, weights=weights).to(torch.device(prep.device))
    if prep.init_state is not None:
        model.load_state_dict(prep.init_state)
    optimizer = make_optimizer(model.parameters(), prep.spec.lr, prep.spec.weight_decay)
    return model, optimizer, torch.Generator().manual_seed(prep.spec.seed)


def _on_device(prep: PreparedRun) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(features of every video the run uses, gtscore targets of its training videos) as tensors on the run's
    device: they go there once, and the loop never touches files."""
    device = torch.device(prep.device)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(array, dtype=np.float32), device=device)

    keys = (*prep.train_keys, *prep.val_keys, *prep.test_keys)
    return ({k: tensor(prep.data[k].features) for k in keys},
            {k: tensor(prep.data[k].gtscore) for k in prep.train_keys})


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, shuffle: torch.Generator,
                 keys: Sequence[str], inputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> float:
    """One epoch: every training video once, in shuffled order, one optimiser step each; the mean loss."""
    model.train()
    losses = [training_step(model, optimizer, inputs[keys[i]], targets[keys[i]])
              for i in torch.randperm(len(keys), generator=shuffle).tolist()]
    return float(torch.stack(losses).mean())


def _evaluate(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], score: Scorer,
              prep: PreparedRun) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(per-video test metrics, per-video validation metrics) of the model in eval mode."""
    model.eval()
    with torch.inference_mode():
        predictions = {k: model(inputs[k]).float().cpu().numpy() for k in (*prep.val_keys, *prep.test_keys)}
    metrics = score(predictions)
    return {k: metrics[k] for k in prep.test_keys}, {k: metrics[k] for k in prep.val_keys}


def _save_epoch(ckpt_dir: Path, prep: PreparedRun, model: torch.nn.Module, features: Mapping[str, Any],
                chosen: Mapping[str, int | None], entry: Mapping[str, Any]) -> None:
    """The checkpoint of the epoch just trained (``entry``), with the policies that select it."""
    epoch = entry["epoch"]
    meta = {"run_key": prep.key, "preset": prep.preset, "dataset": prep.data.dataset, "split": prep.spec.split,
            "seed": prep.spec.seed, "epoch": epoch, "policies": [p for p, e in chosen.items() if e == epoch],
            "test_tau": entry.get("test_tau"), "test_rho": entry.get("test_rho")}
    save_checkpoint(ckpt_dir / checkpoint_name(epoch), model, features, meta, preset=prep.preset, config=prep.config)


def train_loop(
    prep: PreparedRun,
    ckpt_dir: Path,
    *,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Train one run, saving the selected epochs' checkpoints into ``ckpt_dir``; return the loop's results.

    The result dict holds ``history`` (per-epoch means), ``per_video`` (per-epoch per-video test/val metrics),
    ``chosen`` (epoch per policy), ``seconds``, ``resumed_from`` (the epoch restarted from, or None) and
    ``features`` (what the model trained on). The checkpoint folder is created by the first file written into it.
    """
    with torch_threads(prep.threads):  # the count in the run's content key
        return _train_loop(prep, ckpt_dir, progress=progress, on_epoch=on_epoch, scorer=scorer)


def _train_loop(prep: PreparedRun, ckpt_dir: Path, *, progress: bool, on_epoch: EpochCallback | None,
                scorer: Scorer | None) -> dict[str, Any]:
    spec = prep.spec
    model, optimizer, shuffle = _fresh_start(prep)
    score = scorer or make_scorer(prep)
    inputs, targets = _on_device(prep)
    snapshot = restore_resume(resume_file(ckpt_dir), prep.key, model, optimizer, shuffle)
    history: list[dict[str, Any]] = snapshot["history"] if snapshot else []
    per_video: list[dict[str, Any]] = snapshot["per_video"] if snapshot else []
    elapsed = snapshot["elapsed"] if snapshot else 0.0
    resumed_from = len(history) if snapshot else None
    features = features_info(prep)
    chosen = select_epochs(history, prep.policies)

    bar = tqdm(total=spec.epochs, initial=len(history), disable=not progress, leave=False,
               desc=f"{prep.data.dataset} {spec.variant} split {spec.split} seed {spec.seed}")
    for epoch in range(len(history) + 1, spec.epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(model, optimizer, shuffle, prep.train_keys, inputs, targets)
        eval_start = time.perf_counter()
        test, val = _evaluate(model, inputs, score, prep)
        now = time.perf_counter()
        history.append(epoch_entry(epoch, train_loss, now - start, now - eval_start, test, val))
        per_video.append({"test": test, "val": val})
        elapsed += now - start

        chosen = select_epochs(history, prep.policies)
        final = epoch == spec.epochs
        keep = epochs_to_keep(chosen, epoch, final)
        if epoch in keep:
            _save_epoch(ckpt_dir, prep, model, features, chosen, history[-1])
        if epoch % spec.resume_every == 0 or final:
            save_resume(resume_file(ckpt_dir), prep.key, model, optimizer, shuffle, history, per_video, elapsed)
            prune_checkpoints(ckpt_dir, keep)
        bar.set_postfix(loss=f"{train_loss:.4f}", tau=f"{history[-1]['test_tau']:.3f}",
                        rho=f"{history[-1]['test_rho']:.3f}")
        bar.update(1)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    bar.close()
    return {"history": history, "per_video": per_video, "chosen": chosen, "seconds": elapsed,
            "resumed_from": resumed_from, "features": features}


# ---------------------------------------------------------------------------------------------------------------
# a run: the store, the loop, the record


def _stored_record(store_dir: str | Path, prep: PreparedRun) -> dict[str, Any] | None:
    """The stored record of a prepared run, or None when there is none or it is damaged (a warning then says so:
    the run is retrained and its record replaced, which is what the content-addressed store is for)."""
    try:
        return store.find_record(store_dir, prep.data.dataset, prep.spec.variant, prep.key)
    except DataFormatError as exc:
        warnings.warn(f"{exc}: retraining the run to replace it", RuntimeWarning, stacklevel=3)
        return None


def _replace_checkpoints(staged: Path, ckpt_dir: Path) -> Path | None:
    """Move a forced rerun's checkpoint folder into place; return the previous folder (moved aside) to delete."""
    previous = ckpt_dir.with_name(f".{ckpt_dir.name}.replaced")
    if os.path.lexists(previous):
        _remove_tree(previous)
    if os.path.lexists(ckpt_dir):
        os.replace(ckpt_dir, previous)
    if staged.is_dir():
        os.replace(staged, ckpt_dir)
    return previous if os.path.lexists(previous) else None


def _remove_tree(path: Path) -> None:
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
    resume_file(work_dir).unlink(missing_ok=True)
    previous = _replace_checkpoints(work_dir, ckpt_dir) if replacing else None
    store.write_record(record_file, record)
    resume_file(ckpt_dir).unlink(missing_ok=True)
    if previous is not None:
        _remove_tree(previous)
    record["_path"] = str(record_file)
    return record


__all__ = [
    "apply_numerics", "available_splits", "file_sha256", "lookup", "make_scorer", "parse_int_list", "prepare",
    "numerics_identity", "prepared_record_path", "resolve_cnn_weights", "resolve_device", "run", "run_threads",
    "seed_everything", "torch_threads", "train_loop",
]
