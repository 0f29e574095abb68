"""The attention explorer of the book's attention chapter: the maps of trained CSTA models, as pictures.

What is shown, for one video and one model (book method page, method-softmax and method-mixing):

- ``A_T``, the temporal softmax (Eq. 4): every feature dimension's weight spread over the T' steps;
- ``A_D``, the spatial softmax (Eq. 5): every step's weight spread over the D feature dimensions;
- ``M = V ⊙ A_T + V ⊙ A_D``, the mixed features (Eq. 6) that the CLS fold and the classifier read;

above the predicted and ground-truth scores and the shots the 15 % knapsack keeps from each.

**Colour scales.** A softmax over T' steps gives each step about 1/T', so the raw maps look flat. Each softmax
map is shown as its ratio to that uniform share (×T' for A_T, ×D for A_D) on a logarithmic scale centred at 1:
white is the uniform share, red more, blue less, and "twice" and "half" are equally strong colours. The range
covers 99 % of the entries (the rest take the end colours) and is shared by every model of a video, so switching
the model compares like with like. M has no uniform value and its units depend on the model (value embedding or
not): it is shown on a linear scale symmetric around 0, per model. The colour bars label a few ticks chosen so
that no two labels overlap at the bar's height (:func:`colour_ticks`).

**Rows.** A map has D = 1024 feature dimensions, far more than a picture has pixel rows; they are shown in
:data:`ROW_BINS` groups of consecutive dimensions (geometric mean of the ratio for the softmaxes, mean for M),
which is what a reader can see anyway, without the aliasing of dropping rows.

**Pictures that switch in the browser.** Each map is one small raster (one pixel column per step, one pixel row
per group, repeated by whole factors) coloured through a 254-colour palette; zooming into a range of steps crops
and stretches that same raster in the browser (:func:`csta_lib.book.widgets.zoom_viewports`), so the page holds
one raster per (video, model, map), not one per zoom window. The axes, colour bars and score plots are separate
small pictures laid out at fixed fractions of the width (:class:`Layout`) so that they line up with the raster
at any page width. :func:`static_explorer` pre-renders every (video, model) into ``Stack`` widgets switched by
linked controls (no kernel needed); :class:`LiveExplorer` renders on demand from any checkpoint and any eccv16
``.h5`` file or video file when a kernel runs the notebook.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib import pyplot as plt
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import MaxNLocator
from PIL import Image

from csta_lib.book import widgets as book_widgets
from csta_lib.book.captions import dataset_name, features_label, record_caption, weights_label
from csta_lib.book.results import run_experiment
from csta_lib.config import PRESETS, ModelConfig
from csta_lib.data.eccv16 import FRAME_STEP, VideoData, load_eccv16
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET, generate_summary
from csta_lib.runs.checkpoint import load_checkpoint
from csta_lib.runs.experiments import TABLE2_LABELS, check_experiment
from csta_lib.runs.store import resolve_checkpoint
from csta_lib.runs.training import resolve_device

# ---------------------------------------------------------------------------------------------------------------
# what is shown


@dataclass(frozen=True)
class MapKind:
    """One map the explorer shows: its key in the model's attention dict and how it is named and scaled."""

    key: str  # in ``model(x, return_attention=True)[1]``
    button: str  # the control's short label
    title: str  # what it is, one line (HTML-escaped when shown)
    axis: str  # "steps" (A_T: each dimension's distribution over the steps), "dims" (A_D), "" (M: no softmax)
    uses: str  # the name in ``model.attention_info["used_maps"]`` ("" for M: every model has it)

    @property
    def log_scale(self) -> bool:
        """Softmax maps: ratio to uniform on a log scale; M: linear around 0."""
        return bool(self.axis)


MAPS: tuple[MapKind, ...] = (
    MapKind("temporal_attention", "A_T temporal softmax",
            "A_T, the temporal softmax (Eq. 4): for each feature dimension, how its weight is spread over the steps",
            "steps", "temporal"),
    MapKind("spatial_attention", "A_D spatial softmax",
            "A_D, the spatial softmax (Eq. 5): for each step, how its weight is spread over the feature dimensions",
            "dims", "spatial"),
    MapKind("mixed_features", "M mixed features",
            "M = V⊙A_T + V⊙A_D, the mixed features (Eq. 6) that the CLS fold and the classifier read",
            "", ""),
)


@dataclass(frozen=True)
class Zoom:
    """A window of the time axis, as fractions of the T' columns (CLS column included)."""

    label: str
    start: float
    stop: float


ZOOMS: tuple[Zoom, ...] = (
    Zoom("all steps", 0.0, 1.0),
    Zoom("1st quarter", 0.0, 0.25),
    Zoom("2nd quarter", 0.25, 0.5),
    Zoom("3rd quarter", 0.5, 0.75),
    Zoom("4th quarter", 0.75, 1.0),
)

#: Feature dimensions are shown in this many groups of consecutive dimensions (pixel rows of the raster).
ROW_BINS = 128
#: Colour range of a softmax map: at least this factor around uniform, so a near-uniform map stays pale.
MIN_RATIO_RANGE = 1.5
#: The colour range covers this share of the entries; the rest saturate (end colours, the bars' arrows).
CLIP_QUANTILE = 0.99
#: Colour maps: diverging, white in the middle (uniform share; M = 0).
CMAP = "RdBu_r"
#: Palette index of "no value" (the CLS column of a model without a CLS token): a neutral grey.
MISSING_INDEX = 254
MISSING_RGB = (200, 200, 200)


@dataclass(frozen=True)
class Layout:
    """Where each picture sits, as fractions of the explorer's width, and the size the pictures are drawn for.

    Every picture is drawn for a ``width_px``-wide column and shown at the column's actual width, scaled
    together: the feature-axis picture, the map raster and its colour bar share one row (``left`` + ``map`` +
    ``right`` = 1), and the score plot below puts its axes exactly under the raster.
    """

    width_px: int = 800
    left: float = 0.09
    right: float = 0.12
    map_aspect: float = 0.3  # map height / map width aimed at (each video's raster is near it)
    font_pt: float = 10.0
    dpi: int = 100

    @property
    def map(self) -> float:
        return 1.0 - self.left - self.right

    @property
    def label_px(self) -> float:
        """Height of one tick label in pixels (with spacing), for the no-overlap rule of the colour bars."""
        return self.font_pt / 72 * self.dpi * 1.5


LAYOUT = Layout()


# ---------------------------------------------------------------------------------------------------------------
# inputs: videos and models


@dataclass(frozen=True)
class ExplorerVideo:
    """One video the explorer can show: its step features and what is needed to select its shots."""

    name: str  # the video control's label (unique among the videos shown)
    title: str  # one line: dataset, name, key, role, steps
    features: np.ndarray  # (T, 1024) float32
    change_points: np.ndarray  # (S, 2) inclusive frame ranges of the shots
    n_frames: int
    picks: np.ndarray  # (T,) frame of each step
    gtscore: np.ndarray | None = None  # (T,) ground-truth importance; None for a video file
    frame_step: int = FRAME_STEP
    role: str = ""  # "test", "training", ... (which part of a run's split), or "" when no run is involved
    encoder: Any = None  # the frame encoder's EncoderInfo for a video file (None: features from a file)

    @property
    def n_steps(self) -> int:
        return int(self.features.shape[0])

    @classmethod
    def from_eccv16(cls, video: VideoData, dataset: str | None = None, role: str | None = None,
                    name: str | None = None) -> ExplorerVideo:
        """An eccv16 video (``role``: "test", "train", ... shown in its title)."""
        where = f"{dataset_name(dataset)} " if dataset else ""
        kind = f", {role} video" if role else ""
        return cls(name or video.video_name or video.key,
                   f"{where}{video.video_name} ({video.key}{kind}, {video.n_steps} steps)",
                   np.asarray(video.features, np.float32), np.asarray(video.change_points), int(video.n_frames),
                   np.asarray(video.picks), np.asarray(video.gtscore, np.float64), role=role or "")


@dataclass(frozen=True)
class ExplorerModel:
    """One trained model the explorer can show."""

    name: str  # the model control's label (unique)
    description: str  # what it is and what it was trained on, one or two sentences
    model: Any  # a CSTA module in eval mode
    features: Mapping[str, Any] | None = None  # the checkpoint's ``features`` block (what it was trained on)

    @property
    def used_maps(self) -> tuple[str, ...]:
        return tuple(self.model.attention_info["used_maps"])


#: What a switch's value takes away from CSTA: (short name for the model control, words for its description).
_MISSING: dict[str, dict[Any, tuple[str, str]]] = {
    "softmax_axis": {"T": ("A_D", "the spatial softmax A_D"), "D": ("A_T", "the temporal softmax A_T"),
                     None: ("softmax", "both softmaxes")},
    "key_value_embedding": {None: ("K/V emb.", "the key and value embeddings"), "k": ("V emb.", "the value embedding"),
                            "v": ("K emb.", "the key embedding")},
    "positional_encoding": {None: ("PE", "the positional encoding")},
    "cls_token": {False: ("CLS", "the CLS token")},
    "skip_connection": {None: ("skip", "the skip connection")},
}


def differences_from_csta(config: ModelConfig, reference: ModelConfig | None = None) -> list[tuple[str, str]]:
    """What a configuration lacks or changes compared with CSTA (the ``paper`` preset): (short, long) phrases,
    in the order of the switches (a change with no phrase of its own reads ``switch=value``)."""
    reference = reference or PRESETS["paper"]
    out = []
    for name in config.to_dict():
        value, ref = getattr(config, name), getattr(reference, name)
        if value != ref:
            phrase = _MISSING.get(name, {}).get(value)
            out.append(phrase or (f"{name}={value!r}", f"{name}={value!r} (CSTA: {ref!r})"))
    return out


def model_label(preset: str | None, config: ModelConfig) -> str:
    """The model control's label: CSTA, or the Table 2 row (or preset) and what it lacks compared with CSTA."""
    if preset == "paper" or not differences_from_csta(config):
        return "CSTA (the full model)"
    row = TABLE2_LABELS.get(preset or "", preset or "custom model")
    return f"{row}: CSTA without {', '.join(short for short, _ in differences_from_csta(config))}"


def model_differences_text(config: ModelConfig) -> str:
    """One sentence: what this model lacks compared with CSTA (empty for CSTA itself)."""
    missing = [long for _, long in differences_from_csta(config)]
    return f"CSTA without {', '.join(missing)}" if missing else ""


def checkpoint_description(payload: Mapping[str, Any], extra: str = "") -> str:
    """What a checkpoint was trained on, from its ``features`` block: features, CNN init (and ``extra``)."""
    feats = payload.get("features") or {}
    surrogate = feats.get("surrogate")
    parts = [features_label(None if surrogate is None else bool(surrogate)),
             weights_label(feats.get("imagenet_weights"))]
    return "trained on " + ", ".join(parts) + (f"; {extra}" if extra else "")


def model_from_checkpoint(path: str | Path, device: str = "cpu", name: str | None = None,
                          provenance: str | None = None) -> ExplorerModel:
    """An :class:`ExplorerModel` from a checkpoint file (:func:`csta_lib.runs.checkpoint.load_checkpoint`), named
    by its preset and described by what it lacks compared with CSTA and ``provenance`` (default: what the
    checkpoint says it was trained on, and its file name)."""
    model, payload = load_checkpoint(path, map_location=device)
    config = model.config
    label = name or model_label(payload.get("preset"), config)
    what = model_differences_text(config)
    provenance = provenance or checkpoint_description(payload, f"checkpoint {Path(path).name}")
    return ExplorerModel(label, f"{what}; {provenance}" if what else provenance, model, payload.get("features"))


def check_presets(presets: Any, experiment: str = "table2") -> tuple[str, ...]:
    """The notebook parameter ``models``: preset names of ``experiment``'s rows (a list, or one comma-separated
    string); anything else raises :class:`CstaInputError` listing the valid names."""
    names = _split_paths(presets) if isinstance(presets, (str, list, tuple)) else None
    valid = [v.preset for v in check_experiment(experiment).variants]
    if not names or any(n not in valid for n in names):
        raise CstaInputError(f"parameter models={presets!r}: expected preset names of {experiment}'s rows, "
                             f"among {', '.join(valid)}")
    return tuple(dict.fromkeys(names))


def store_models(profile: str, presets: Sequence[str], store_dir: str | Path | None = None,
                 datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None, policy: str = "test-max",
                 device: str | None = None) -> tuple[list[ExplorerModel], list[dict[str, Any]]]:
    """The Table 2 models ``presets`` from the results store, with their run records: the ablation chapter's runs
    (trained by its grid when missing) of the first of ``datasets`` that has them, lowest split and seed."""
    presets = check_presets(list(presets))
    records, _ = run_experiment("table2", profile, store_dir, datasets, seeds, device)
    if not records:
        raise CstaInputError(f"table2 at profile {profile!r} has no runs on {', '.join(datasets or ['any dataset'])}")
    dataset = next(d for d in (datasets or [records[0]["dataset"]]) if any(r["dataset"] == d for r in records))
    chosen = []
    for preset in presets:
        runs = [r for r in records if r["preset"] == preset and r["dataset"] == dataset]
        chosen.append(min(runs, key=lambda r: (r["split"]["index"], r["seed"])))
    models = []
    device = resolve_device(device)
    for record in chosen:
        path = resolve_checkpoint(record, policy)
        if path is None:
            raise CstaInputError(f"the {record['preset']} run selected no {policy!r} checkpoint (Table 2 runs select "
                                 f"{', '.join(record.get('selected', {}))})")
        epoch = record["selected"][policy]["epoch"]
        models.append(model_from_checkpoint(path, device, provenance=f"Table 2 run: {record_caption([record], policy)}"
                                                                     f", checkpoint of epoch {epoch}"))
    return models, chosen


def split_videos(record: Mapping[str, Any], n_videos: int | None = None, minimum: int = 3) -> list[ExplorerVideo]:
    """The videos of a run's split, test videos first: all of them (``n_videos``: that many; a split of fewer than
    ``minimum`` test videos is padded with training videos, labelled as such)."""
    data = load_eccv16(record["provenance"]["data_file"], record["dataset"])
    tests, trains = list(record["split"]["test_keys"]), list(record["split"]["train_keys"])
    count = n_videos or max(minimum, len(tests))
    keys = (tests + trains)[:count]
    names = [data[k].video_name or k for k in keys]
    return [ExplorerVideo.from_eccv16(data[k], record["dataset"], "test" if k in tests else "training",
                                      name if names.count(name) == 1 else f"{name} ({k})")
            for k, name in zip(keys, names, strict=True)]


# ---------------------------------------------------------------------------------------------------------------
# computing what is shown


@dataclass(frozen=True)
class AttentionView:
    """What one model computes on one video, ready to draw: scores, maps (D, T+1) and selected steps."""

    scores: np.ndarray  # (T,)
    maps: Mapping[str, np.ndarray]  # key -> (D, T+1): column 0 the CLS row (NaN without a CLS token)
    has_cls: bool
    used_maps: tuple[str, ...]
    selected: np.ndarray  # (T,) bool: the step lies in a shot the knapsack keeps from the predicted scores
    gt_selected: np.ndarray | None  # (T,) bool: the same from the ground truth (None without one)


def ratio_to_uniform(attention: np.ndarray, axis: int) -> np.ndarray:
    """A softmax map divided by its uniform value (1 / its size along ``axis``): 1 means "uniform share"."""
    return np.asarray(attention, dtype=np.float64) * attention.shape[axis]


def selected_steps(scores: np.ndarray, video: ExplorerVideo, budget: float = SUMMARY_BUDGET) -> np.ndarray:
    """(T,) bool: which steps lie in the shots the knapsack summary keeps (method page, method-summary)."""
    summary = generate_summary(scores, video.change_points, video.n_frames, video.picks, budget)
    return summary[np.asarray(video.picks)].astype(bool)


def compute_view(model: ExplorerModel, video: ExplorerVideo) -> AttentionView:
    """Run ``model`` on ``video`` (no gradients) and arrange its maps for drawing."""
    module = model.model
    device = next(module.parameters()).device
    with torch.no_grad():
        scores, attention = module(torch.tensor(np.array(video.features), device=device), return_attention=True)
    scores = scores.detach().cpu().double().numpy()
    maps, has_cls = {}, False
    for kind in MAPS:
        values = attention[kind.key].detach().cpu().double().numpy()  # (T', D)
        rows = values.shape[0]
        if kind.log_scale:
            values = ratio_to_uniform(values, axis=0 if kind.axis == "steps" else 1)
        values = values.T  # (D, T'): time across
        if rows == video.n_steps:  # no CLS row: a grey column keeps the steps of every model aligned
            values = np.concatenate([np.full((values.shape[0], 1), np.nan), values], axis=1)
        else:
            has_cls = True
        maps[kind.key] = values
    gt = selected_steps(video.gtscore, video) if video.gtscore is not None else None
    return AttentionView(scores, maps, has_cls, model.used_maps, selected_steps(scores, video), gt)


def bin_rows(values: np.ndarray, bins: int = ROW_BINS, log: bool = True) -> np.ndarray:
    """(D, C) -> (min(bins, D), C): consecutive rows averaged (geometrically when ``log``); NaN stays NaN."""
    groups = np.array_split(np.arange(values.shape[0]), min(bins, values.shape[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        if log:
            logs = np.log(np.clip(values, 1e-300, None))
            return np.exp(np.stack([logs[g].mean(axis=0) for g in groups]))
        return np.stack([values[g].mean(axis=0) for g in groups])


# ---------------------------------------------------------------------------------------------------------------
# colour scales


@dataclass(frozen=True)
class ColourScale:
    """A map's colour range, whether it is logarithmic, and the colour bar's label."""

    low: float
    high: float
    log: bool
    label: str  # on the colour bar
    description: str  # above the map, in words

    @property
    def norm(self) -> Normalize:
        return LogNorm(self.low, self.high) if self.log else Normalize(self.low, self.high)

    def unit(self, values: np.ndarray) -> np.ndarray:
        """Values mapped to [0, 1] along the scale (clipped; NaN stays NaN)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.log:
                t = (np.log(values) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
            else:
                t = (values - self.low) / (self.high - self.low)
        return np.clip(t, 0.0, 1.0)


def symmetric_log_range(ratio: np.ndarray, floor: float = MIN_RATIO_RANGE, quantile: float = CLIP_QUANTILE
                        ) -> tuple[float, float]:
    """``(1/r, r)``: r covers the ``quantile`` of the deviations from 1 in either direction (at least ``floor``).

    A few extreme entries would otherwise stretch the scale until the bulk of the map is white; entries beyond
    the range are drawn in the end colours.
    """
    positive = ratio[np.isfinite(ratio) & (ratio > 0)]
    if positive.size == 0:
        return 1 / floor, floor
    r = float(max(np.exp(np.quantile(np.abs(np.log(positive)), quantile)), floor))
    return 1 / r, r


def symmetric_linear_range(values: np.ndarray, quantile: float = CLIP_QUANTILE) -> tuple[float, float]:
    """``(-a, a)``: a covers the ``quantile`` of the absolute values (1 if all are 0 or missing)."""
    finite = np.abs(values[np.isfinite(values)])
    a = float(np.quantile(finite, quantile)) if finite.size else 0.0
    a = a if a > 0 else (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    return -a, a


def colour_scale(kind: MapKind, values: Sequence[np.ndarray]) -> ColourScale:
    """The colour scale of ``kind`` covering all of ``values`` (the binned maps it will colour)."""
    joined = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    if kind.log_scale:
        low, high = symmetric_log_range(joined)
        uniform = "1/T′" if kind.axis == "steps" else "1/D"
        return ColourScale(low, high, True, f"× uniform ({uniform}), log",
                           f"ratio to the uniform share {uniform} on a log scale (white = uniform, red = more, "
                           "blue = less; the same range for every model of this video)")
    low, high = symmetric_linear_range(joined)
    return ColourScale(low, high, False, "M, linear",
                       "value of M on a linear scale around 0 (white; red positive, blue negative), in this "
                       "model's own range")


def _nice_candidates(low: float, high: float) -> list[float]:
    """1-2-5 values inside ``[low, high]`` in order of preference: 1, powers of ten, then 2s and 5s."""
    first, last = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
    tens = [10.0 ** e for e in range(first, last + 1)]
    others = [m * 10.0 ** e for e in range(first, last + 1) for m in (2.0, 5.0)]
    inside = [v for v in [1.0, *tens, *others] if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]
    return list(dict.fromkeys(inside))


def colour_ticks(scale: ColourScale, bar_px: float, label_px: float = LAYOUT.label_px) -> list[float]:
    """Tick values for a colour bar ``bar_px`` tall: no two labels closer than ``label_px`` (so none overlap).

    Log scales take 1 first, then powers of ten, then 2s and 5s, then the range's ends (two significant digits)
    when room is left; linear scales take 0 and matplotlib's nice steps. Always at least one tick.
    """
    lo, hi = (math.log(scale.low), math.log(scale.high)) if scale.log else (scale.low, scale.high)
    span = hi - lo
    if not span > 0:
        return [scale.low]
    position = (lambda v: (math.log(v) - lo) / span * bar_px) if scale.log else (lambda v: (v - lo) / span * bar_px)
    if scale.log:
        ends = [float(f"{scale.low:.2g}"), float(f"{scale.high:.2g}")]
        candidates = _nice_candidates(scale.low, scale.high) + [v for v in ends if scale.low <= v <= scale.high]
    else:
        steps = MaxNLocator(nbins=max(2, int(bar_px // (2 * label_px))), symmetric=True).tick_values(lo, hi)
        candidates = [0.0] + [float(v) for v in steps if lo <= v <= hi]
    chosen: list[float] = []
    for value in candidates:
        if all(abs(position(value) - position(c)) >= label_px for c in chosen):
            chosen.append(value)
    return sorted(chosen) or [candidates[0] if candidates else scale.low]


def tick_text(value: float) -> str:
    """A tick label: ``0.5``, ``2``, ``1e+03`` (``%g``)."""
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------------------------
# pictures


def raster_factors(n_columns: int, n_rows: int, layout: Layout = LAYOUT) -> tuple[int, int]:
    """Whole repeat factors (per column, per row) that bring a map raster near ``layout.map_aspect``.

    Columns are repeated only for short videos (the browser stretches the raster without smoothing anyway, and
    repeated columns cost bytes); rows are repeated for long ones (nearly free in a PNG).
    """
    per_column = max(1, round(n_rows / (layout.map_aspect * n_columns)))
    per_row = max(1, round(layout.map_aspect * n_columns * per_column / n_rows))
    return per_column, per_row


def map_height_px(n_columns: int, n_rows: int, layout: Layout = LAYOUT) -> float:
    """Height in drawn pixels of a map row (the raster at ``layout.map`` of the width, its aspect kept)."""
    per_column, per_row = raster_factors(n_columns, n_rows, layout)
    return layout.width_px * layout.map * (n_rows * per_row) / (n_columns * per_column)


def raster_png(values: np.ndarray, scale: ColourScale, layout: Layout = LAYOUT) -> bytes:
    """A binned map (rows, columns) as a palette PNG: one block per entry, NaN grey (see the module docstring)."""
    rows, columns = values.shape
    index = np.rint(scale.unit(values) * (MISSING_INDEX - 1))
    index = np.where(np.isfinite(index), index, MISSING_INDEX).astype(np.uint8)
    per_column, per_row = raster_factors(columns, rows, layout)
    image = Image.fromarray(np.repeat(np.repeat(index, per_row, axis=0), per_column, axis=1), mode="P")
    colours = (colormaps[CMAP](np.linspace(0, 1, MISSING_INDEX))[:, :3] * 255).round().astype(np.uint8)
    palette = np.concatenate([colours.ravel(), np.array(MISSING_RGB, np.uint8), np.zeros(3, np.uint8)])
    image.putpalette(palette.tolist())
    return book_widgets.image_png(image)


def _figure(width_px: float, height_px: float, layout: Layout) -> Any:
    """A figure of exactly ``round(width_px)`` x ``round(height_px)`` pixels (a hair over, as matplotlib truncates)."""
    return plt.figure(figsize=((round(width_px) + 1e-3) / layout.dpi, (round(height_px) + 1e-3) / layout.dpi),
                      dpi=layout.dpi)


@functools.lru_cache(maxsize=512)  # the softmax maps' bars repeat across the models of a video
def colourbar_png(scale: ColourScale, height_px: float, layout: Layout = LAYOUT) -> bytes:
    """The colour bar of a map row: as tall as the map, ``layout.right`` of the width, non-overlapping ticks."""
    width_px = layout.width_px * layout.right
    fig = _figure(width_px, height_px, layout)
    margin = min(0.08, layout.label_px / 2 / height_px)  # room for half a label above the top tick
    ax = fig.add_axes((10 / width_px, margin, 14 / width_px, 1 - 2 * margin))
    mappable = plt.cm.ScalarMappable(norm=scale.norm, cmap=CMAP)
    bar = fig.colorbar(mappable, cax=ax, extend="both", extendfrac=0.04)
    ticks = colour_ticks(scale, height_px * (1 - 2 * margin), layout.label_px)
    bar.set_ticks(ticks, labels=[tick_text(t) for t in ticks])
    bar.ax.minorticks_off()
    bar.ax.tick_params(labelsize=layout.font_pt)
    bar.set_label(scale.label, fontsize=layout.font_pt * 0.9)
    return book_widgets.figure_png(fig, layout.dpi)


@functools.lru_cache(maxsize=64)  # the same for every map of a video
def feature_axis_png(n_dims: int, height_px: float, layout: Layout = LAYOUT) -> bytes:
    """The map rows' axis: feature dimensions 0 … D-1 from top to bottom, left of the raster."""
    width_px = layout.width_px * layout.left
    fig = _figure(width_px, height_px, layout)
    ax = fig.add_axes((1 - 1 / width_px, 0, 1 / width_px, 1))
    ax.set_ylim(n_dims, 0)
    ticks = [t for t in MaxNLocator(nbins=4, steps=[1, 2, 4, 5, 10]).tick_values(0, n_dims) if 0 <= t < n_dims]
    ax.set_yticks([*ticks, n_dims], [f"{int(t)}" for t in ticks] + [f"{n_dims - 1}"])
    labels = ax.get_yticklabels()
    labels[0].set_verticalalignment("top")
    labels[-1].set_verticalalignment("bottom")
    ax.tick_params(labelsize=layout.font_pt * 0.9, bottom=False, labelbottom=False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel("feature dim.", fontsize=layout.font_pt * 0.9, labelpad=2)
    return book_widgets.figure_png(fig, layout.dpi)


def window_steps(zoom: Zoom, n_columns: int) -> tuple[float, float]:
    """The x range (in steps; the CLS column is x = -1) of ``zoom`` over ``n_columns`` = T+1 columns."""
    return -1.5 + zoom.start * n_columns, -1.5 + zoom.stop * n_columns


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True in ``mask``."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


#: Colours of the score plot (named in the legend under it).
PREDICTED_COLOUR = "#d95f02"
TRUTH_COLOUR = "#222222"


def step_label(has_cls: bool, frame_step: int = FRAME_STEP) -> str:
    """The time axis' label."""
    return f"step (one every {frame_step} frames{'; CLS = the CLS row' if has_cls else ''})"


def step_ticks(x0: float, x1: float, has_cls: bool) -> tuple[list[float], list[str]]:
    """Integer step ticks in the window ``[x0, x1]``, with "CLS" at -1 when it is in view (no tick crowding it)."""
    span = x1 - x0
    cls_in_view = has_cls and x0 <= -1 <= x1
    ticks = [float(t) for t in MaxNLocator(nbins=8, integer=True).tick_values(max(x0, 0), x1)
             if max(x0, 0) <= t <= x1 and not (cls_in_view and t + 1 < 0.06 * span)]
    cls = [-1.0] if cls_in_view else []
    return [*cls, *ticks], ["CLS"] * len(cls) + [f"{int(t)}" for t in ticks]


def scores_pngs(view: AttentionView, video: ExplorerVideo, zooms: Sequence[Zoom] = ZOOMS, layout: Layout = LAYOUT,
                height_px: float = 230) -> list[bytes]:
    """The predicted and ground-truth scores and the kept shots of one video, one picture per zoom window, the
    axes exactly under the map raster (``layout.left`` … ``layout.left + layout.map`` of the width)."""
    n_steps = video.n_steps
    fig = _figure(layout.width_px, height_px, layout)
    label_frac = 2.6 * layout.label_px / height_px  # tick labels and the axis label under the plot
    shots_h, gap = 0.16, 0.04
    ax_s = fig.add_axes((layout.left, label_frac + shots_h + gap, layout.map, 1 - label_frac - shots_h - gap - 0.04))
    ax_k = fig.add_axes((layout.left, label_frac, layout.map, shots_h), sharex=ax_s)
    steps = np.arange(n_steps)
    if video.gtscore is not None:
        ax_s.plot(steps, video.gtscore, color=TRUTH_COLOUR, lw=1.2)
    ax_s.plot(steps, view.scores, color=PREDICTED_COLOUR, lw=1.6)
    ax_s.set_ylabel("score", fontsize=layout.font_pt * 0.9)
    ax_s.tick_params(labelsize=layout.font_pt * 0.9, labelbottom=False)
    ax_s.yaxis.set_major_locator(MaxNLocator(nbins=3))
    rows = [("model", view.selected, PREDICTED_COLOUR)]
    if view.gt_selected is not None:
        rows.append(("truth", view.gt_selected, TRUTH_COLOUR))
    for y, (_, mask, colour) in enumerate(rows):
        for a, b in _runs(mask):
            ax_k.add_patch(plt.Rectangle((a - 0.5, y + 0.15), b - a + 1, 0.7, color=colour, lw=0))
    starts = np.interp(np.asarray(video.change_points)[1:, 0], video.picks, steps)  # shot boundaries, in steps
    ax_k.vlines(starts - 0.5, -0.1, len(rows) + 0.1, color="#999999", lw=0.6)
    ax_k.set_ylim(-0.1, len(rows) + 0.1)
    ax_k.set_yticks([y + 0.5 for y in range(len(rows))], [name for name, _, _ in rows])
    ax_k.invert_yaxis()
    ax_k.tick_params(labelsize=layout.font_pt * 0.9, left=False)
    ax_k.set_xlabel(step_label(view.has_cls, video.frame_step), fontsize=layout.font_pt * 0.9)
    pictures = []
    for zoom in zooms:  # one figure, redrawn per window
        x0, x1 = window_steps(zoom, n_steps + 1)
        ax_k.set_xlim(x0, x1)
        ax_k.set_xticks(*step_ticks(x0, x1, view.has_cls))
        pictures.append(book_widgets.figure_png(fig, layout.dpi, close=False))
    plt.close(fig)
    return pictures


# ---------------------------------------------------------------------------------------------------------------
# the explorer's widgets


EXPLORER_CLASS = "csta-attention-explorer"
PICTURE_CLASS = "csta-attention-picture"
RASTER_CLASS = "csta-attention-raster"
#: CSS class of each control (the browser tests find them by these).
CONTROL_CLASSES = {"video": "csta-control-video", "model": "csta-control-model", "map": "csta-control-map",
                   "zoom": "csta-control-zoom"}


@dataclass
class Controls:
    """The explorer's four independent controls; each picture's stacks are linked to them."""

    video: Any
    model: Any
    map: Any
    zoom: Any

    @classmethod
    def create(cls, video_names: Sequence[str], model_names: Sequence[str]) -> Controls:
        def dropdown(names: Sequence[str]) -> Any:
            return widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0,
                                    layout=book_widgets.shared_layout(width="auto", flex="1 1 0%", min_width="0",
                                                                     margin="2px 0"))

        def buttons(labels: Sequence[str]) -> Any:
            return widgets.ToggleButtons(options=[(label, i) for i, label in enumerate(labels)], value=0,
                                         style={"button_width": "auto"},
                                         layout=book_widgets.shared_layout(margin="2px 0"))

        controls = cls(dropdown(video_names), dropdown(model_names), buttons([k.button for k in MAPS]),
                       buttons([z.label for z in ZOOMS]))
        for name, control in controls.items():
            control.add_class(CONTROL_CLASSES[name])
        return controls

    def items(self) -> list[tuple[str, Any]]:
        return [("video", self.video), ("model", self.model), ("map", self.map), ("zoom", self.zoom)]

    def box(self) -> Any:
        """The controls, one per line, each after its name."""
        lines = [widgets.HBox([book_widgets.html(name, width="4em", flex="0 0 auto"), control],
                              layout=book_widgets.shared_layout(width="100%", margin="0", align_items="center"))
                 for name, control in self.items()]
        return widgets.VBox(lines, layout=book_widgets.shared_layout(width="100%", margin="0 0 0.5em 0"))


def map_row(kind: MapKind, view: AttentionView, scale: ColourScale, controls: Controls, pool: Any,
            layout: Layout = LAYOUT) -> Any:
    """One map of one (video, model): its title, then feature axis | raster (zoomable) | colour bar."""
    values = bin_rows(view.maps[kind.key], log=kind.log_scale)
    rows, columns = values.shape
    used = (not kind.uses) or kind.uses in view.used_maps
    note = "" if used else (" <b>This model does not use this map</b> (it is computed from the same logits, "
                            "but never mixed into M); shown for comparison.")
    title = book_widgets.html(f"<b>{html.escape(kind.title)}.</b> Colour: {html.escape(scale.description)}. Rows: "
                  f"{values.shape[0]} groups of {view.maps[kind.key].shape[0] // rows} feature dimensions"
                  f"{' (geometric mean)' if kind.log_scale else ' (mean)'}.{note}", "csta-map-title")
    height = map_height_px(columns, rows, layout)
    raster = pool.image(raster_png(values, scale, layout), RASTER_CLASS)
    viewports = book_widgets.zoom_viewports(raster, [(z.start, z.stop) for z in ZOOMS])
    cells = [pool.image(feature_axis_png(view.maps[kind.key].shape[0], height, layout)),
             book_widgets.linked_stack(viewports, controls.zoom),
             pool.image(colourbar_png(scale, height, layout))]
    return widgets.VBox([title, book_widgets.row(cells, [layout.left, layout.map, layout.right])],
                        layout=book_widgets.shared_layout(margin="0"))


def legend_html(video: ExplorerVideo, view: AttentionView) -> str:
    """The legend under the score plot, in words (readable at any width)."""
    truth = (f"<span style='color:{TRUTH_COLOUR}'>&#9644; ground truth (the file's gtscore)</span>, "
             if video.gtscore is not None else "no ground truth for this video, ")
    rows = "the model's scores" + (" (row <i>model</i>) and from the ground truth (row <i>truth</i>)"
                                   if view.gt_selected is not None else " (row <i>model</i>)")
    return (f"{truth}<span style='color:{PREDICTED_COLOUR}'>&#9644; predicted score</span>. Bars: the shots the "
            f"{SUMMARY_BUDGET:.0%} knapsack summary keeps from {rows}; grey ticks: shot boundaries (the video's "
            "change points).")


def picture(video: ExplorerVideo, model: ExplorerModel, view: AttentionView, scales: Sequence[ColourScale],
            controls: Controls, pool: Any = None, layout: Layout = LAYOUT) -> Any:
    """Everything shown for one (video, model): a header, the maps (switched by the map control, zoomed by the
    zoom control) and the scores and shots (zoomed too). ``pool``: a :class:`csta_lib.book.widgets.ImagePool`
    shared by the pictures of one explorer (identical pictures stored once)."""
    pool = pool if pool is not None else book_widgets.ImagePool()
    header = book_widgets.html(f"<b>{html.escape(video.title)}</b><br>model: <b>{html.escape(model.name)}</b>"
                   f"<br><span style='color:#555'>{html.escape(model.description)}</span>", "csta-picture-header")
    maps = book_widgets.linked_stack(
        [map_row(kind, view, scale, controls, pool, layout) for kind, scale in zip(MAPS, scales, strict=True)],
        controls.map)
    scores = book_widgets.linked_stack(
        [pool.image(png) for png in scores_pngs(view, video, ZOOMS, layout)], controls.zoom)
    return widgets.VBox([header, maps, scores, book_widgets.html(legend_html(video, view), "csta-picture-legend")],
                        layout=book_widgets.shared_layout(margin="0"))


def video_scales(views: Sequence[AttentionView]) -> list[list[ColourScale]]:
    """Per model, the colour scale of each map: softmax maps share one range over the models of a video, M is
    scaled per model (its units differ between models)."""
    binned = [[bin_rows(v.maps[k.key], log=k.log_scale) for k in MAPS] for v in views]
    shared = {i: colour_scale(k, [b[i] for b in binned]) for i, k in enumerate(MAPS) if k.log_scale}
    return [[shared[i] if k.log_scale else colour_scale(k, [b[i]]) for i, k in enumerate(MAPS)] for b in binned]


def explorer_box(controls: Controls, pictures: Any, extra: Sequence[Any] = ()) -> Any:
    """The explorer: its style, any ``extra`` widgets, the controls, then the pictures."""
    # the HTML widgets' text at the page's line height (ipywidgets gives every line a control's 28 px)
    text = (f".{EXPLORER_CLASS} .widget-html-content {{ line-height: 1.45; }}\n"
            ".csta-map-title, .csta-picture-legend { margin-top: 0.6em !important; }")  # over the layouts' 0
    css = book_widgets.explorer_css(RASTER_CLASS, [(z.start, z.stop) for z in ZOOMS]) + "\n" + text
    box = widgets.VBox([book_widgets.style_html(css), *extra, controls.box(), pictures],
                       layout=book_widgets.shared_layout(width="100%"))
    box.add_class(EXPLORER_CLASS)
    return box


def static_explorer(videos: Sequence[ExplorerVideo], models: Sequence[ExplorerModel],
                    layout: Layout = LAYOUT) -> Any:
    """Every (video, model) pre-rendered, switched in the browser by four linked controls (no kernel needed)."""
    if not videos or not models:
        raise CstaInputError(f"the attention explorer needs at least one video and one model "
                             f"(got {len(videos)} and {len(models)})")
    _check_unique("video", [v.name for v in videos])
    _check_unique("model", [m.name for m in models])
    controls = Controls.create([v.name for v in videos], [m.name for m in models])
    pool = book_widgets.ImagePool()
    per_video = []
    for video in videos:
        views = [compute_view(m, video) for m in models]
        scales = video_scales(views)
        per_video.append(book_widgets.linked_stack(
            [picture(video, m, view, s, controls, pool, layout)
             for m, view, s in zip(models, views, scales, strict=True)],
            controls.model))
    pictures = book_widgets.linked_stack(per_video, controls.video)
    pictures.add_class(PICTURE_CLASS)
    return explorer_box(controls, pictures)


def _check_unique(what: str, names: Sequence[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CstaInputError(f"the attention explorer's {what} names must be distinct; repeated: {duplicates}")


# ---------------------------------------------------------------------------------------------------------------
# the live explorer (a kernel behind the page)


def _split_paths(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return []
    items = text.replace("\n", ",").split(",") if isinstance(text, str) else [str(t) for t in text]
    return [t.strip() for t in items if t and t.strip()]


def live_wanted(live: Any, checkpoints: Any, source: Any) -> bool:
    """The notebook parameter ``live``: True/False, or None for "live when checkpoints or a source is given"."""
    if live is None:
        return bool(checkpoints or source)
    if isinstance(live, bool):
        return live
    raise CstaInputError(f"parameter live={live!r}: expected True, False or None")


def videos_from_source(source: str | Path, encoder: str | None = None) -> list[ExplorerVideo]:
    """The videos of ``source``: every video of an eccv16 ``.h5`` file, or one video file encoded by the
    summarize pipeline's frame encoder (``encoder``: its name, None for the default; KTS shots as change points;
    no ground truth)."""
    path = Path(source)
    if not path.is_file():
        raise CstaInputError(f"video source {path} does not exist (an eccv16 .h5 file or a video file)")
    if path.suffix.lower() in (".h5", ".hdf5"):
        data = load_eccv16(path)
        names = [v.video_name or k for k, v in data.videos.items()]
        return [ExplorerVideo.from_eccv16(v, data.dataset, name=n if names.count(n) == 1 else f"{n} ({k})")
                for (k, v), n in zip(data.videos.items(), names, strict=True)]
    return [video_file(path, encoder)]


def video_file(path: str | Path, encoder: str | None = None) -> ExplorerVideo:
    """One video file, sampled, encoded (``encoder``, None for the default) and cut into KTS shots as
    ``csta summarize`` does (:func:`csta_lib.runs.video.encode_video`, :func:`csta_lib.runs.video.video_shots`)."""
    # the [video] extra (PyAV, the TFLite encoder), needed only for a video file
    from csta_lib.runs import video as runs_video

    encoded = runs_video.encode_video(path, runs_video.build_encoder(encoder))
    shots = runs_video.video_shots(encoded)
    name, info = Path(path).name, encoded.encoder
    return ExplorerVideo(name, f"{name} ({len(encoded.features)} steps, {info.name} features, KTS shots, "
                               "no ground truth)",
                         np.asarray(encoded.features, np.float32), shots, encoded.n_frames, encoded.picks, None,
                         encoded.sampled.stride, encoder=info)


def feature_warnings(videos: Sequence[ExplorerVideo], models: Sequence[ExplorerModel]) -> list[str]:
    """Why a model's scores on an encoded video file mean little (features it was not trained on), per model."""
    encoded = [v for v in videos if v.encoder is not None]
    if not encoded:
        return []
    # the [video] extra, as in video_file (only reached when a video file was encoded)
    from csta_lib.runs.video import feature_mismatch

    return [f"{m.name}: {problem}" for m in models
            if (problem := feature_mismatch(encoded[0].encoder, dict(m.features or {})))]


class LiveExplorer:
    """The explorer with a kernel: point it at checkpoints and a video source, then the same four controls.

    The video and model controls call back into Python, which computes that (video, model) on demand (cached);
    the map and zoom controls switch the pictures in the browser as in the static explorer. ``widget`` is what
    to display.
    """

    def __init__(self, checkpoints: str | Sequence[str] = (), source: str | Path | None = None,
                 device: str = "cpu", layout: Layout = LAYOUT, names: Sequence[str] | None = None,
                 encoder: str | None = None) -> None:
        self.device, self.layout, self.names, self.encoder = device, layout, list(names or []), encoder
        self.videos: list[ExplorerVideo] = []
        self.models: list[ExplorerModel] = []
        self.pool = book_widgets.ImagePool()
        self._pictures: dict[tuple[int, int], Any] = {}
        self.checkpoint_text = widgets.Textarea(", ".join(_split_paths(checkpoints)), description="checkpoints",
                                                layout=widgets.Layout(width="100%", height="4em"),
                                                style={"description_width": "7em"})
        self.source_text = widgets.Text(str(source or ""), description="video source",
                                        placeholder="an eccv16 .h5 file or a video file",
                                        layout=widgets.Layout(width="100%"), style={"description_width": "7em"})
        self.load_button = widgets.Button(description="load", button_style="primary")
        self.status = book_widgets.html("", "csta-live-status")
        self.controls = Controls.create(["(none)"], ["(none)"])
        self.picture_box = widgets.VBox([], layout=book_widgets.shared_layout(width="100%"))
        self.picture_box.add_class(PICTURE_CLASS)
        self.load_button.on_click(lambda _: self.load())
        self.controls.video.observe(self._changed, names="value")
        self.controls.model.observe(self._changed, names="value")
        self.widget = explorer_box(self.controls, self.picture_box, [
            self.checkpoint_text, self.source_text, widgets.HBox([self.load_button, self.status])])
        if self.checkpoint_text.value and self.source_text.value:
            self.load()

    def load(self) -> None:
        """Read the checkpoints and the video source named in the text fields; show the first picture."""
        try:
            paths = _split_paths(self.checkpoint_text.value)
            if not paths:
                raise CstaInputError("no checkpoint given (one or more paths, separated by commas)")
            names = self.names if len(self.names) == len(paths) else [None] * len(paths)
            models = [model_from_checkpoint(p, self.device, n) for p, n in zip(paths, names, strict=True)]
            labels = [m.name for m in models]
            models = [m if labels.count(m.name) == 1 else ExplorerModel(f"{m.name} [{Path(p).name}]",
                                                                         m.description, m.model)
                      for m, p in zip(models, paths, strict=True)]
            videos = videos_from_source(self.source_text.value, self.encoder)
        except (CstaInputError, OSError) as exc:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        self.models, self.videos, self._pictures, self.pool = models, videos, {}, book_widgets.ImagePool()
        with self.controls.video.hold_trait_notifications(), self.controls.model.hold_trait_notifications():
            self.controls.video.options = [(v.name, i) for i, v in enumerate(videos)]
            self.controls.model.options = [(m.name, i) for i, m in enumerate(models)]
            self.controls.video.value, self.controls.model.value = 0, 0
        warnings = "".join(f"<br><span style='color:#b00'>warning: {html.escape(w)}</span>"
                           for w in feature_warnings(videos, models))
        self.status.value = f"{len(videos)} video(s), {len(models)} model(s) loaded{warnings}"
        self.show()

    def _changed(self, _change: Any) -> None:
        if self.videos and self.models:
            self.show()

    def show(self) -> None:
        """Put the picture of the chosen (video, model) under the controls, computing it on first use."""
        key = (int(self.controls.video.value), int(self.controls.model.value))
        if key not in self._pictures:
            video = self.videos[key[0]]
            views = [compute_view(m, video) for m in self.models]  # all models: the shared colour scales
            scales = video_scales(views)
            for j, (m, view, s) in enumerate(zip(self.models, views, scales, strict=True)):
                self._pictures[(key[0], j)] = picture(video, m, view, s, self.controls, self.pool, self.layout)
        self.picture_box.children = [self._pictures[key]]


__all__ = ["AttentionView", "CLIP_QUANTILE", "check_presets", "split_videos", "store_models", "ColourScale", "Controls",
           "EXPLORER_CLASS", "ExplorerModel",
           "ExplorerVideo", "LAYOUT", "Layout", "LiveExplorer", "MAPS", "MIN_RATIO_RANGE", "MapKind", "ROW_BINS",
           "ZOOMS", "Zoom", "bin_rows", "live_wanted", "colour_scale", "colour_ticks", "compute_view",
           "differences_from_csta", "feature_warnings",
           "model_from_checkpoint", "model_label", "picture", "ratio_to_uniform", "static_explorer",
           "symmetric_linear_range", "symmetric_log_range", "video_file", "video_scales", "videos_from_source"]
