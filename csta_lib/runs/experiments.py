"""Named experiments of the paper and the profiles that size them.

An *experiment* is a list of model variants (a preset, optionally with switches changed) that the book
compares: ``table1`` (CSTA, Table 1), ``table2`` (the seven ablation rows of Table 2), ``fig4`` (the four
CNNs used directly as score predictors, Figure 4) and ``deviations`` (CSTA as coded, then with the two
switches where the code and the paper disagree: LayerNorm after the skip connection, bilinear resizing).

A *profile* says how much of the paper's protocol to run for each experiment (datasets, folds, seeds,
epochs). All sizes live in :data:`PROFILE_SIZES`, the one place to change them:

``smoke``
    seconds: 1 epoch on a tiny surrogate subset of each dataset (a few of the shortest videos), for the
    tests and ``make book PROFILE=smoke``; Table 1 runs two seeds, so that the tests see real intervals.
``quick``
    the book's default on a 2-core CPU: fold 0 only; Table 1 on both datasets, 2 epochs, SumMe with 3 seeds (so
    that its page shows real spread and 95 % intervals) and TVSum with one (its epochs cost three times SumMe's);
    the ablations, the deviations and Figure 4 on SumMe, one seed (n = 1, no interval), 1 epoch; so that the
    whole book builds in under 15 minutes on a 2-core CPU (:data:`QUICK_TABLE1_EPOCHS`).
``paper``
    the paper's protocol: both datasets × 5 folds × 5 seeds × 100 epochs for every experiment (GPU work).

Each experiment also says which kinds of run (:class:`Selection`) its rows need. Every experiment has the
official protocol's runs (``OFFICIAL``: trained on all of a fold's training videos; ``test-max`` and ``last``
selection), as the official code; Table 1 adds separate ``HELD_OUT`` runs for its ``val`` row (20 % of the
training videos held out, the epoch chosen on them), so that the validation hold-out never changes the
training set of the official-protocol rows.

A grid can also run an experiment on a user's own dataset (``csta data build``, :func:`user_data`): the profile
then sizes only the folds, seeds and epochs, on that file and its split file.

:func:`plan` turns (experiment, profile) into the list of runs (:class:`RunPlan`: the experiment's row label
and, through :meth:`RunPlan.spec`, the training run specification :class:`csta_lib.runs.spec.RunSpec`).
:func:`describe` prints what a profile cut compared with the paper.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from csta_lib.config import PRESETS, TABLE2_ORDER, ModelConfig, get_config
from csta_lib.data.eccv16 import DATASETS, MEAN_STEPS, N_VIDEOS, load_eccv16
from csta_lib.data.splits import load_splits
from csta_lib.errors import CstaInputError
from csta_lib.runs.io import write_json_atomic
from csta_lib.runs.spec import RunSpec
from csta_lib.runs.surrogate import DEFAULT_CACHE_DIR, build_surrogate, resolve_features
from csta_lib.train import PAPER_EPOCHS

PAPER_FOLDS = 5
PAPER_SEEDS = 5  # the paper averages "10 runs without fixing the seed" (method page, method-loss); we fix 5 seeds


# -------------------------------------------------------------------------------------------------------------
# experiments


@dataclass(frozen=True)
class Variant:
    """One row of an experiment: a preset, optionally with some :class:`ModelConfig` switches changed."""

    label: str  # the row label the book shows
    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def config(self) -> ModelConfig:
        """The model configuration of this row (validated)."""
        return get_config(self.preset).replace(**dict(self.overrides))

    @property
    def name(self) -> str:
        """A unique, file-system-safe name: the preset, plus ``+switch=value`` for each override."""
        return self.preset + "".join(f"+{k}={v}" for k, v in self.overrides)


@dataclass(frozen=True)
class Selection:
    """Which model-selection policies a run computes, and the validation hold-out they need.

    The official code trains each fold on *all* of its training videos and keeps the epoch with the best test
    score (``test-max``); the ``val`` policy needs some training videos held out, which changes the training set,
    so it gets runs of its own instead of changing the official ones.
    """

    name: str  # short, file-system safe: "official" | "held-out"
    policies: tuple[str, ...]
    val_fraction: float

    @property
    def description(self) -> str:
        """The kind of run in words: its policies and what it trains on."""
        policies = " and ".join(self.policies)
        if self.val_fraction == 0:
            return f"{policies}, trained on all of the fold's training videos (the official protocol)"
        return (f"{policies}, trained on {1 - self.val_fraction:.0%} of the fold's training videos, epoch chosen on "
                f"the other {self.val_fraction:.0%}")


#: The official protocol: every training video trains; test-max (the official rule) and last from the same run.
OFFICIAL = Selection("official", ("test-max", "last"), 0.0)
#: The honest alternative: 20 % of the training videos held out, the epoch chosen on them.
HELD_OUT = Selection("held-out", ("val",), 0.2)


@dataclass(frozen=True)
class Experiment:
    """A named experiment: what it reproduces, its rows and the kinds of run each row gets (:class:`Selection`)."""

    name: str
    title: str
    variants: tuple[Variant, ...]
    selections: tuple[Selection, ...] = (OFFICIAL,)


#: The paper's row label of each Table 2 preset (the book prints the paper's numbers under the same labels).
TABLE2_LABELS = {
    "table2.baseline": "GoogleNet (Baseline)",
    "table2.attention": "(+) Attention Module",
    "table2.att_d": "(+) Att_D",
    "table2.kv": "(+) Key, Value Embedding",
    "table2.pe": "(+) Positional Encoding",
    "table2.cls": "(+) X_CLS",
    "paper": "(+) Skip Connection (CSTA)",
}
#: The paper's name of each Figure 4 backbone.
FIG4_LABELS = {"googlenet": "GoogleNet", "mobilenet_v2": "MobileNet-V2", "efficientnet_b0": "EfficientNet-B0",
                "resnet18": "ResNet-18"}

EXPERIMENTS: dict[str, Experiment] = {
    # Table 1 reports all three policies: test-max and last from official-protocol runs, val from separate runs
    # with a hold-out. The other experiments report test-max (as the paper) and so need only official runs,
    # which they share with Table 1 where the model is the same (CSTA: table1, table2's last row, deviations).
    "table1": Experiment("table1", "Table 1: CSTA, the main result", (Variant("CSTA", "paper"),),
                         (OFFICIAL, HELD_OUT)),
    "table2": Experiment(
        "table2", "Table 2: ablation, each row adds one module",
        tuple(Variant(TABLE2_LABELS[p], p) for p in TABLE2_ORDER),
    ),
    "fig4": Experiment(
        "fig4", "Figure 4: CNNs used directly as score predictors",
        # fig4.googlenet is the same model as table2.baseline: run it under that preset so that both
        # experiments share (not duplicate) those runs in the store.
        tuple(Variant(label, "table2.baseline" if b == "googlenet" else f"fig4.{b}")
              for b, label in FIG4_LABELS.items()),
    ),
    "deviations": Experiment(
        "deviations", "Where the official code and the paper disagree",
        (
            Variant("as coded: BatchNorm2d(1) after the skip, adaptive pooling", "paper"),
            Variant("paper Eq. 3: LayerNorm after the skip", "paper", (("skip_norm", "layernorm"),)),
            Variant("paper text: bilinear resizing", "paper", (("cnn_resize", "bilinear"),)),
        ),
    ),
}


# -------------------------------------------------------------------------------------------------------------
# profiles: every size in one place


@dataclass(frozen=True)
class UserVideos:
    """What a grid needs to know of a user's own dataset: how many folds its split file has, and (for cost
    estimates) its first fold's training and test videos and its mean length in steps."""

    n_folds: int
    n_train: int
    n_test: int
    mean_steps: float


@dataclass(frozen=True)
class Size:
    """How much of the protocol one experiment runs in one profile."""

    datasets: tuple[str, ...]
    splits: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs: int
    data: str = "full"  # "full": every video of the dataset; "tiny": a few short videos (smoke tests); "user"
    user: UserVideos | None = None  # data "user": the user dataset's folds and videos
    #: Datasets that run fewer seeds than ``seeds`` (``(("tvsum", (0,)),)``): where one dataset's epochs cost
    #: several times another's, a profile can keep the spread on one and the time budget on both.
    dataset_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def seeds_of(self, dataset: str) -> tuple[int, ...]:
        """The seeds ``dataset`` runs: ``seeds``, unless :attr:`dataset_seeds` names others for it."""
        return dict(self.dataset_seeds).get(dataset, self.seeds)

    def n_seed_runs(self) -> int:
        """(dataset, seed) pairs summed over the datasets: the runs per fold of one variant and kind of run."""
        return sum(len(self.seeds_of(d)) for d in self.datasets)

    def seeds_text(self) -> str:
        """How many seeds run, in words: ``3`` or ``3 (tvsum: 1)``."""
        fewer = [f"{d}: {len(self.seeds_of(d))}" for d in self.datasets if self.seeds_of(d) != self.seeds]
        return f"{len(self.seeds)}" + (f" ({', '.join(fewer)})" if fewer else "")


_ALL_FOLDS = tuple(range(PAPER_FOLDS))
#: Epochs of the quick profile. Table 1: 2, the fewest for which test-max, val and last selection can differ.
#: The other experiments report test-max only (as the paper) and run 1 epoch. Measured on a quiet 2-core EPYC
#: (AVX-512) from an empty store: with 3 epochs everywhere and 3 seeds on both datasets 04_main_result alone took
#: 796 s; with 2 epochs everywhere still 590 s (430 s of it TVSum's six runs, hence TVSum's one seed) and the whole
#: book 16.5 minutes, 190 s of it Table 2 and the deviations.
QUICK_TABLE1_EPOCHS = 2
QUICK_OTHER_EPOCHS = 1
_PAPER_SIZE = Size(DATASETS, _ALL_FOLDS, tuple(range(PAPER_SEEDS)), PAPER_EPOCHS)

#: The sizes of every (profile, experiment). The quick sizes of table2, fig4 and deviations share fold 0 / seed 0 /
#: 1 epoch on SumMe, so the CSTA run of table2's last row and deviations' first row is one run, and Figure 4's
#: GoogLeNet bar is table2's baseline run, each computed once and reused from the store. Table 1 runs 3 seeds at
#: quick on SumMe (2 at smoke): the fewest that give its page a spread and an interval (n = 1 gives none).
PROFILE_SIZES: dict[str, dict[str, Size]] = {
    "smoke": {
        "table1": Size(DATASETS, (0,), (0, 1), 1, data="tiny"),
        "table2": Size(("summe",), (0,), (0,), 1, data="tiny"),
        "fig4": Size(("summe",), (0,), (0,), 1, data="tiny"),
        "deviations": Size(("summe",), (0,), (0,), 1, data="tiny"),
    },
    "quick": {
        # TVSum's epochs cost three times SumMe's (twice the videos, 1.6 times as long): its Table 1 runs one seed
        "table1": Size(DATASETS, (0,), (0, 1, 2), QUICK_TABLE1_EPOCHS, dataset_seeds=(("tvsum", (0,)),)),
        "table2": Size(("summe",), (0,), (0,), QUICK_OTHER_EPOCHS),
        "fig4": Size(("summe",), (0,), (0,), QUICK_OTHER_EPOCHS),
        "deviations": Size(("summe",), (0,), (0,), QUICK_OTHER_EPOCHS),
    },
    "paper": {name: _PAPER_SIZE for name in EXPERIMENTS},
}
PROFILES = tuple(PROFILE_SIZES)

#: The tiny data of the smoke profile, one fold of the shortest videos of each dataset (train, test):
#: SumMe 64-117 steps, TVSum 167-221 steps. With the ``val`` policy one training video becomes validation.
TINY_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "summe": (("video_12", "video_8", "video_11"), ("video_19",)),
    "tvsum": (("video_45", "video_38"), ("video_26",)),
}

PROFILE_NOTES = {
    "smoke": "seconds: 1 epoch on tiny surrogate subsets (3-4 short videos per dataset, one fold; Table 1 two "
             "seeds), for tests; the numbers mean nothing",
    "quick": "the book's default on a 2-core CPU (fold 0; Table 1 on both datasets, 2 epochs, SumMe with 3 seeds "
             "and TVSum with one; the rest on SumMe, one seed, 1 epoch; the whole book in under 15 minutes)",
    "paper": "the paper's protocol (5 folds x 100 epochs x 5 seeds, both datasets): GPU or cluster work, about 650 "
             "distinct runs for all experiments; `csta grid --plan` counts them and measures what they cost on this "
             "machine, on N Ray nodes like it and (when measured) on a GPU",
}


def check_experiment(name: str) -> Experiment:
    """The experiment called ``name``; unknown names raise :class:`CstaInputError` listing the known ones."""
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise CstaInputError(f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENTS)}") from None


def check_profile(name: str) -> str:
    """``name`` if it is a profile; else :class:`CstaInputError` listing the profiles."""
    if name not in PROFILE_SIZES:
        raise CstaInputError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return name


def size(experiment: str, profile: str, user: DataSource | None = None) -> Size:
    """The size of ``experiment`` in ``profile``; on a user's dataset (``user``, from :func:`user_data`), the
    profile's folds that its split file has, its seeds and epochs, on that one dataset."""
    check_experiment(experiment)
    s = PROFILE_SIZES[check_profile(profile)][experiment]
    if user is None:
        return s
    if user.user is None:
        raise CstaInputError(f"{user.features}: not a user data source (see experiments.user_data)")
    return Size((user.dataset,), tuple(k for k in s.splits if k < user.user.n_folds), s.seeds, s.epochs,
                data="user", user=user.user)


def _range_text(values: Sequence[int], total: int | None = None) -> str:
    if total is not None and tuple(values) == tuple(range(total)):
        return f"all {total}"
    return ",".join(str(v) for v in values)


def describe(experiment: str, profile: str, datasets: Iterable[str] | None = None,
             user: DataSource | None = None) -> str:
    """One paragraph: what ``profile`` runs for ``experiment`` (only ``datasets`` of its datasets, when given;
    on ``user``'s dataset instead, when given) and what it cut compared with the paper."""
    exp, s = check_experiment(experiment), size(experiment, profile, user)
    s = replace(s, datasets=grid_datasets(experiment, profile, datasets, user))
    n_runs = len(exp.variants) * len(exp.selections) * len(s.splits) * s.n_seed_runs()
    cuts = []
    if s.data == "tiny":
        cuts.append("tiny surrogate subsets of the datasets instead of all videos")
    if s.user is not None:
        cuts.append(f"the user dataset {', '.join(s.datasets)} instead of SumMe and TVSum (your own videos and "
                    "annotations: not the paper's data)")
    elif not s.datasets:
        cuts.append("none of the chosen datasets is run in this profile")
    elif set(s.datasets) != set(DATASETS):
        cuts.append(f"datasets {', '.join(s.datasets)} only (the paper uses both datasets)")
    folds = s.user.n_folds if s.user is not None else PAPER_FOLDS
    if len(s.splits) < folds:
        cuts.append(f"fold(s) {_range_text(s.splits)} of {folds}")
    if min(len(s.seeds_of(d)) for d in s.datasets or ("",)) < PAPER_SEEDS:
        cuts.append(f"{s.seeds_text()} seed(s) instead of {PAPER_SEEDS}")
    if s.epochs < PAPER_EPOCHS:
        cuts.append(f"{s.epochs} epoch(s) instead of {PAPER_EPOCHS}")
    kinds = "" if len(exp.selections) == 1 else f"{len(exp.selections)} kinds of run x "
    head = (f"{exp.title} - profile {profile!r}: {len(exp.variants)} variant(s) x {kinds}{len(s.datasets)} "
            f"dataset(s) x {len(s.splits)} fold(s) x {s.seeds_text()} seed(s) x {s.epochs} epoch(s) = {n_runs} run(s)"
            f" ({'; '.join(sel.description for sel in exp.selections)})")
    if not cuts:
        return head + "; the paper's full protocol."
    return head + ". Cut compared with the paper: " + "; ".join(cuts) + "."


# -------------------------------------------------------------------------------------------------------------
# data for a grid


@dataclass(frozen=True)
class DataSource:
    """The feature file and split file a grid's runs of one dataset read."""

    dataset: str
    features: Path
    splits_file: Path | None  # None: the official CSTA splits (data locator)
    user: UserVideos | None = None  # a user's own dataset (:func:`user_data`)


def user_data(features: str | os.PathLike[str], splits_file: str | os.PathLike[str]) -> DataSource:
    """A grid's data on a user's own eccv16 file (``csta data build``) and its split file (``csta data split``),
    both checked now: the file loads, every fold names only its videos."""
    data = load_eccv16(features)
    folds = load_splits(splits_file, data.dataset)
    for fold in folds:
        fold.validate(data.keys(), where=str(features))
    steps = sum(v.n_steps for v in data.values()) / len(data)
    return DataSource(data.dataset, Path(features), Path(splits_file),
                      UserVideos(len(folds), len(folds[0].train_keys), len(folds[0].test_keys), steps))


def tiny_surrogate(dataset: str, cache_dir: str | os.PathLike[str] | None = None) -> DataSource:
    """The smoke profile's data: a surrogate file with a few short videos and a one-fold split file.

    Built once (deterministic, cached in ``cache_dir``, by default the surrogate cache) and reused.
    """
    train, test = TINY_SPLITS[dataset]
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    subset = hashlib.sha256(json.dumps([train, test]).encode()).hexdigest()[:8]  # a changed subset: new files
    features = folder / f"eccv16_dataset_{dataset}_tiny_{subset}_surrogate.h5"
    splits_file = folder / f"{dataset}_tiny_{subset}_splits.json"
    # Both files are deterministic and written atomically: concurrent builders write the same bytes.
    if not features.is_file():
        build_surrogate(dataset, features, keys=[*train, *test])
    if not splits_file.is_file():
        write_json_atomic(splits_file, [{"train_keys": list(train), "test_keys": list(test)}])
    return DataSource(dataset, features, splits_file)


def grid_datasets(experiment: str, profile: str, datasets: Iterable[str] | None = None,
                  user: DataSource | None = None) -> tuple[str, ...]:
    """The datasets a grid runs: the profile's (or ``user``'s one dataset), restricted to ``datasets`` when given
    (unknown names raise :class:`CstaInputError`)."""
    s = size(experiment, profile, user)
    if datasets is None:
        return s.datasets
    wanted = tuple(datasets)
    unknown = [d for d in wanted if d not in DATASETS and d not in s.datasets]
    if unknown:
        raise CstaInputError(f"unknown dataset {unknown[0]!r}; known datasets: {', '.join(DATASETS)}")
    return tuple(d for d in s.datasets if d in wanted)


def prepare_data(experiment: str, profile: str, cache_dir: str | os.PathLike[str] | None = None,
                 datasets: Iterable[str] | None = None, user: DataSource | None = None) -> dict[str, DataSource]:
    """Resolve (and, for surrogates, build once) the data of every dataset the grid uses (``datasets``: only
    those of the profile's datasets; ``user``: that user dataset alone)."""
    if user is not None:
        return {user.dataset: user}
    s = size(experiment, profile)
    chosen = grid_datasets(experiment, profile, datasets)
    if s.data == "tiny":
        return {d: tiny_surrogate(d, cache_dir) for d in chosen}
    return {d: DataSource(d, Path(resolve_features(d, cache_dir)), None) for d in chosen}


# -------------------------------------------------------------------------------------------------------------
# expansion


@dataclass(frozen=True)
class RunPlan:
    """One run of a grid: which row of which experiment, and everything the training run needs."""

    experiment: str
    variant: Variant
    dataset: str
    split: int
    seed: int
    epochs: int
    data: DataSource = field(compare=False)
    selection: Selection = OFFICIAL

    @property
    def label(self) -> str:
        """A short human name: ``variant dataset split k seed s`` (plus ``held-out`` for validation runs)."""
        extra = "" if self.selection == OFFICIAL else f" {self.selection.name}"
        return f"{self.variant.name} {self.dataset} split {self.split} seed {self.seed}{extra}"

    def spec(self) -> RunSpec:
        """The training run specification (:class:`csta_lib.runs.spec.RunSpec`) of this run."""
        return RunSpec(
            preset=self.variant.preset,
            overrides=self.variant.overrides,
            dataset=None if self.data.user is not None else self.dataset,  # a user dataset's file names it
            split=self.split,
            seed=self.seed,
            epochs=self.epochs,
            data_path=str(self.data.features),
            splits_file=None if self.data.splits_file is None else str(self.data.splits_file),
            policies=self.selection.policies,
            val_fraction=self.selection.val_fraction,
        )


def plan(experiment: str, profile: str, data: Mapping[str, DataSource] | None = None,
         cache_dir: str | os.PathLike[str] | None = None, datasets: Iterable[str] | None = None,
         user: DataSource | None = None) -> list[RunPlan]:
    """Every run of ``experiment`` at ``profile``, in a stable order (variant, selection, dataset, split, seed):
    the official-protocol runs of a variant come before its held-out runs.

    ``data`` (from :func:`prepare_data`) avoids resolving the data again; ``datasets`` keeps only the runs of
    those of the profile's datasets (a chapter rerun on one dataset trains only that one); ``user`` runs the
    experiment on that user dataset instead (:func:`user_data`).
    """
    exp, s = check_experiment(experiment), size(experiment, profile, user)
    chosen = grid_datasets(experiment, profile, datasets, user)
    data = dict(data) if data is not None else prepare_data(experiment, profile, cache_dir, chosen, user)
    missing = [d for d in chosen if d not in data]
    if missing:
        raise CstaInputError(f"no data given for dataset(s) {', '.join(missing)}")
    for v in exp.variants:
        if v.preset not in PRESETS:
            raise CstaInputError(f"experiment {experiment}: unknown preset {v.preset!r}")
        v.config  # noqa: B018 - validates the overrides before anything runs
    return [
        RunPlan(experiment, v, d, k, seed, s.epochs, data[d], sel)
        for v in exp.variants for sel in exp.selections for d in chosen for k in s.splits
        for seed in s.seeds_of(d)
    ]


# -------------------------------------------------------------------------------------------------------------
# what a run computes, and the fixed-rate CPU estimate that sizes the profiles (measured costs: runs.cost)

#: An ASSUMED rate (not a measurement), for sizing the profiles the same way on every machine: seconds per
#: training step of the ``paper`` model at T steps on a 2-core CPU ≈ STEP_SECONDS_AT_293 · T / 293; an evaluation
#: pass costs about a third of a step. What a run costs on the machine at hand is measured by
#: :mod:`csta_lib.runs.cost` (``csta grid --plan``).
STEP_SECONDS_AT_293 = 0.6
#: Videos per fold: a fifth of each dataset is tested, the rest trains (the official 5-fold splits).
TEST_VIDEOS = {d: n // PAPER_FOLDS for d, n in N_VIDEOS.items()}
TRAIN_VIDEOS = {d: n - TEST_VIDEOS[d] for d, n in N_VIDEOS.items()}
#: Mean length (15-frame steps) of the smoke profile's tiny videos (SumMe 64-117, TVSum 167-221 steps).
TINY_MEAN_STEPS = 130.0


@dataclass(frozen=True)
class RunWork:
    """What one run computes: for ``epochs`` epochs, ``train_steps`` optimiser steps and ``evaluations`` forward
    passes (test and validation videos), on videos of about ``mean_steps`` steps (the dataset's mean length)."""

    dataset: str
    mean_steps: float
    train_steps: int
    evaluations: int
    epochs: int


def run_work(dataset: str, s: Size, selection: Selection = OFFICIAL) -> RunWork:
    """The work of one run of ``dataset`` at size ``s`` (a hold-out moves training videos to evaluation)."""
    if s.user is not None:
        n_train, n_test, steps = s.user.n_train, s.user.n_test, s.user.mean_steps
    elif s.data == "tiny":
        n_train, n_test, steps = len(TINY_SPLITS[dataset][0]), len(TINY_SPLITS[dataset][1]), TINY_MEAN_STEPS
    else:
        n_train, n_test, steps = TRAIN_VIDEOS[dataset], TEST_VIDEOS[dataset], MEAN_STEPS[dataset]
    n_val = max(1, round(selection.val_fraction * n_train)) if selection.val_fraction > 0 else 0
    return RunWork(dataset, steps, n_train - n_val, n_test + n_val, s.epochs)


def run_seconds(dataset: str, s: Size, step_seconds_at_293: float = STEP_SECONDS_AT_293,
                selection: Selection = OFFICIAL) -> float:
    """CPU seconds of one run of ``dataset`` at size ``s`` at the assumed rate :data:`STEP_SECONDS_AT_293`
    (training steps plus per-epoch evaluation of the test and validation videos)."""
    work = run_work(dataset, s, selection)
    per_step = step_seconds_at_293 * work.mean_steps / 293.0
    return per_step * (work.train_steps + work.evaluations / 3.0) * work.epochs


def distinct_runs(names: Iterable[str], profile: str) -> list[tuple[ModelConfig, str, Size, Selection]]:
    """The distinct runs of several experiments as (model, dataset, size, kind of run); a run shared by two
    experiments (e.g. CSTA) counts once."""
    runs: dict[tuple[Any, ...], tuple[ModelConfig, str, Size, Selection]] = {}
    for name in names:
        s, exp = size(name, profile), check_experiment(name)
        for v in exp.variants:
            config = v.config
            identity = json.dumps(config.to_dict(), sort_keys=True)
            for sel in exp.selections:
                for d in s.datasets:
                    for k in s.splits:
                        for seed in s.seeds_of(d):
                            runs[(identity, sel, d, k, seed, s.epochs, s.data)] = (config, d, s, sel)
    return list(runs.values())


def unique_runs(names: Iterable[str], profile: str) -> int:
    """How many distinct runs the experiments need together (shared CSTA runs count once)."""
    return len(distinct_runs(names, profile))


def estimate_profile_seconds(names: Iterable[str], profile: str,
                             step_seconds_at_293: float = STEP_SECONDS_AT_293) -> float:
    """CPU seconds to train the distinct runs of several experiments (what the book pays once) at the assumed
    rate :data:`STEP_SECONDS_AT_293`."""
    return sum(run_seconds(d, s, step_seconds_at_293, sel) for _, d, s, sel in distinct_runs(names, profile))
