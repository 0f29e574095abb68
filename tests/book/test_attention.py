"""The attention explorer (csta_lib.book.attention) and its widget blocks (csta_lib.book.widgets), without a browser:
what the maps are scaled to, that colour-bar labels never overlap, how the pictures line up, that the controls are
independent links over nested stacks, that a zoom window reuses the stored picture, and the live explorer's
callbacks (tests/book/test_attention_browser.py drives the same widgets in a real browser)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

from csta_lib.book import attention
from csta_lib.book import widgets as book_widgets
from csta_lib.config import PRESETS
from csta_lib.data import load_eccv16
from csta_lib.errors import CstaInputError

PRESETS_SHOWN = ("paper", "table2.attention")  # CSTA (a CLS row) and a row without A_D and without CLS


@pytest.fixture(scope="module")
def checkpoints(preset_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return {p: preset_checkpoints[p] for p in PRESETS_SHOWN}


@pytest.fixture(scope="module")
def explorer_inputs(tiny: dict[str, Path], checkpoints: dict[str, Path], one_thread):
    videos = attention.videos_from_source(tiny["data"])[:2]
    models = [attention.model_from_checkpoint(checkpoints[p]) for p in PRESETS_SHOWN]
    return videos, models


def _png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


# ---------------------------------------------------------------------------------------------------------------
# scales and ticks


def test_softmax_maps_are_shown_as_ratio_to_uniform_on_a_symmetric_log_range() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    temporal = np.exp(logits) / np.exp(logits).sum(axis=0)  # softmax over the 6 rows
    ratio = attention.ratio_to_uniform(temporal, axis=0)
    np.testing.assert_allclose(ratio.mean(axis=0), 1.0)  # a uniform share is 1 on average per column
    low, high = attention.symmetric_log_range(ratio, quantile=1.0)
    assert low == pytest.approx(1 / high) and high == pytest.approx(max(ratio.max(), 1 / ratio.min()))
    spiky = np.ones(1000)
    spiky[0] = 1e6  # one extreme entry does not stretch the scale
    assert attention.symmetric_log_range(spiky, quantile=0.99) == pytest.approx((1 / 1.5, 1.5))
    assert attention.symmetric_log_range(np.full((3, 3), np.nan)) == pytest.approx((1 / 1.5, 1.5))
    kind = attention.MAPS[0]
    scale = attention.colour_scale(kind, [ratio])
    assert scale.log and "log" in scale.label and "1/T′" in scale.description
    mixed = attention.colour_scale(attention.MAPS[2], [np.array([-3.0, 1.0, np.nan])])
    assert not mixed.log and mixed.low == -mixed.high and "linear" in mixed.label


@pytest.mark.parametrize("low_high", [(1 / 1.5, 1.5), (0.29, 1 / 0.29), (1 / 5, 5), (1e-3, 1e3), (1 / 40, 40)])
@pytest.mark.parametrize("bar_px", [60, 120, 200, 400])
def test_colour_bar_labels_never_overlap(low_high: tuple[float, float], bar_px: float) -> None:
    """The old bars labelled 0.1, 0.2, 0.5, 1, 2, 5, 10 whatever the bar's height: on a wide log range they
    overlapped. Every pair of labels is now at least a label's height apart, 1 is always there."""
    scale = attention.ColourScale(*low_high, True, "", "")
    label_px = attention.LAYOUT.label_px
    ticks = attention.colour_ticks(scale, bar_px, label_px)
    positions = [math.log(t / scale.low) / math.log(scale.high / scale.low) * bar_px for t in ticks]
    assert 1.0 in ticks and all(scale.low <= t <= scale.high for t in ticks)
    assert all(b - a >= label_px - 1e-9 for a, b in zip(positions, positions[1:], strict=False)), (ticks, positions)
    if bar_px >= 200:
        assert len(ticks) >= 3  # room for more than the middle: the ends or nice values in between


def test_linear_colour_ticks_include_zero_and_keep_apart() -> None:
    scale = attention.ColourScale(-0.03, 0.03, False, "", "")
    ticks = attention.colour_ticks(scale, 150, 20)
    assert 0.0 in ticks and len(ticks) >= 3
    gaps = np.diff([(t - scale.low) / (scale.high - scale.low) * 150 for t in ticks])
    assert (gaps >= 20 - 1e-9).all()


def test_rows_are_binned_by_geometric_mean_and_missing_columns_stay_missing() -> None:
    values = np.array([[1.0, 4.0, np.nan], [4.0, 1.0, np.nan], [2.0, 2.0, np.nan], [8.0, 0.5, np.nan]])
    binned = attention.bin_rows(values, bins=2, log=True)
    np.testing.assert_allclose(binned[:, :2], [[2.0, 2.0], [4.0, 1.0]])
    assert np.isnan(binned[:, 2]).all()
    np.testing.assert_allclose(attention.bin_rows(values, bins=2, log=False)[:, 0], [2.5, 5.0])
    assert attention.bin_rows(values, bins=10).shape == (4, 3)  # never more bins than rows


# ---------------------------------------------------------------------------------------------------------------
# pictures


def test_raster_is_one_block_per_entry_with_missing_cls_in_grey() -> None:
    values = np.array([[np.nan, 0.5, 2.0], [np.nan, 1.0, 1.0]])
    scale = attention.ColourScale(0.5, 2.0, True, "", "")
    png = attention.raster_png(values, scale)
    per_column, per_row = attention.raster_factors(3, 2)
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "P" and image.size == (3 * per_column, 2 * per_row)
        index = np.asarray(image)
    assert (index[:, :per_column] == attention.MISSING_INDEX).all()  # the CLS column of a model without one
    assert index[0, per_column] == 0 and index[0, 2 * per_column] == attention.MISSING_INDEX - 1  # the ends
    assert index[per_row, per_column] == round((attention.MISSING_INDEX - 1) / 2)  # 1 = the middle (white)


@pytest.mark.parametrize("n_columns", [5, 66, 118, 301, 701])
def test_raster_aspect_stays_near_the_layouts(n_columns: int) -> None:
    per_column, per_row = attention.raster_factors(n_columns, attention.ROW_BINS)
    aspect = attention.ROW_BINS * per_row / (n_columns * per_column)
    assert 0.15 <= aspect <= 0.6, aspect
    assert attention.map_height_px(n_columns, attention.ROW_BINS) == pytest.approx(
        attention.LAYOUT.width_px * attention.LAYOUT.map * aspect)


def test_pictures_of_a_row_share_its_height_and_the_score_plot_its_width(explorer_inputs) -> None:
    videos, models = explorer_inputs
    view = attention.compute_view(models[0], videos[0])
    layout = attention.LAYOUT
    height = attention.map_height_px(videos[0].n_steps + 1, attention.ROW_BINS)
    scale = attention.video_scales([view])[0][0]
    bar = attention.colourbar_png(scale, height)
    axis = attention.feature_axis_png(1024, height)
    assert _png_size(bar) == (round(layout.width_px * layout.right), round(height))
    assert _png_size(axis) == (round(layout.width_px * layout.left), round(height))
    scores = attention.scores_pngs(view, videos[0])
    assert len(scores) == len(attention.ZOOMS) and len(set(scores)) == len(scores)  # each window its own axis
    assert {_png_size(s)[0] for s in scores} == {layout.width_px}


def test_step_ticks_label_the_cls_row_without_crowding_it() -> None:
    positions, labels = attention.step_ticks(-1.5, 116.5, has_cls=True)
    assert labels[0] == "CLS" and positions[0] == -1
    assert all(p - positions[0] >= 0.06 * 118 for p in positions[1:])
    positions, labels = attention.step_ticks(28, 57, has_cls=True)
    assert "CLS" not in labels and all(28 <= p <= 57 for p in positions)
    assert "CLS" not in attention.step_ticks(-1.5, 20, has_cls=False)[1]
    assert attention.window_steps(attention.ZOOMS[0], 118) == (-1.5, 116.5)
    assert attention.window_steps(attention.ZOOMS[2], 118) == (-1.5 + 29.5, -1.5 + 59)


# ---------------------------------------------------------------------------------------------------------------
# what is computed and said


def test_view_pads_the_cls_column_of_a_model_without_one(explorer_inputs) -> None:
    videos, models = explorer_inputs
    video = videos[0]
    full, without = (attention.compute_view(m, video) for m in models)
    assert full.has_cls and not without.has_cls
    for kind in attention.MAPS:
        assert full.maps[kind.key].shape == without.maps[kind.key].shape == (1024, video.n_steps + 1)
        assert np.isnan(without.maps[kind.key][:, 0]).all() and not np.isnan(full.maps[kind.key]).any()
    # the softmax maps are ratios to uniform: A_T's columns average 1 over the T' rows, A_D's rows over D
    np.testing.assert_allclose(full.maps["temporal_attention"].mean(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(full.maps["spatial_attention"].mean(axis=0), 1.0, rtol=1e-5)
    assert without.used_maps == ("temporal",) and full.used_maps == ("temporal", "spatial")
    # the kept steps: the knapsack summary's frames at the steps' picks (tiny shots of 45 frames do not fit the 15 %
    # budget of these 18-step videos; half of the video does)
    from csta_lib.evaluation import generate_summary

    summary = generate_summary(full.scores, video.change_points, video.n_frames, video.picks)
    np.testing.assert_array_equal(full.selected, summary[video.picks].astype(bool))
    assert attention.selected_steps(full.scores, video, budget=0.5).sum() >= video.n_steps // 3
    assert full.gt_selected is not None


def test_models_are_named_by_what_they_lack_compared_with_csta() -> None:
    assert attention.model_label("paper", PRESETS["paper"]) == "CSTA (the full model)"
    assert attention.model_label("table2.kv", PRESETS["table2.kv"]) == \
        "(+) Key, Value Embedding: CSTA without PE, CLS, skip"
    assert attention.model_label("table2.attention", PRESETS["table2.attention"]).endswith(
        "CSTA without A_D, PE, CLS, K/V emb., skip")
    assert attention.model_differences_text(PRESETS["table2.cls"]) == "CSTA without the skip connection"
    custom = PRESETS["paper"].replace(scale="D")
    assert attention.model_label(None, custom) == "custom model: CSTA without scale='D'"


def test_parameters_are_checked() -> None:
    assert attention.check_presets("paper, table2.kv") == ("paper", "table2.kv")
    with pytest.raises(CstaInputError, match="table2.attention"):  # the message lists the valid names
        attention.check_presets(["paper", "fig4.resnet18"])
    with pytest.raises(CstaInputError):
        attention.check_presets(None)
    assert attention.live_wanted(None, None, "x.h5") and not attention.live_wanted(None, None, None)
    assert attention.live_wanted(True, None, None) is True
    with pytest.raises(CstaInputError, match="live"):
        attention.live_wanted("yes", None, None)
    with pytest.raises(CstaInputError, match="does not exist"):
        attention.videos_from_source("/nonexistent/video.h5")


# ---------------------------------------------------------------------------------------------------------------
# widgets


def test_zoom_viewports_reuse_one_image_and_css_crops_each_window() -> None:
    image = book_widgets.png_image(b"png")
    windows = [(0.0, 1.0), (0.25, 0.5)]
    viewports = book_widgets.zoom_viewports(image, windows)
    assert all(v.children == (image,) for v in viewports)  # one Image model, shown in every viewport
    assert book_widgets.zoom_class(0.25, 0.5) in viewports[1]._dom_classes
    css = book_widgets.explorer_css("raster", windows)
    assert ".csta-zoom-250-500 img.raster { transform: scaleX(4) translateX(-25%); }" in css
    assert "image-rendering: pixelated" in css
    with pytest.raises(ValueError):
        book_widgets.zoom_viewports(image, [(0.5, 0.5)])


def test_linked_stack_and_row_check_their_arguments() -> None:
    control = widgets.Dropdown(options=[("a", 0), ("b", 1)], value=0)
    stack = book_widgets.linked_stack([widgets.HTML("a"), widgets.HTML("b")], control)
    assert stack.link.source == (control, "index") and stack.link.target == (stack, "selected_index")
    with pytest.raises(ValueError, match="options"):
        book_widgets.linked_stack([widgets.HTML("a")], control)
    with pytest.raises(ValueError):
        book_widgets.row([widgets.HTML("a")], [0.5])
    assert book_widgets.shared_layout(margin="0") is book_widgets.shared_layout(margin="0")
    pool = book_widgets.ImagePool()
    assert pool.image(b"x") is pool.image(b"x") and pool.image(b"x") is not pool.image(b"y") and len(pool) == 2


def _links(widget) -> list:
    """Every jslink below ``widget`` (stacks keep theirs as ``.link``)."""
    found = [widget.link] if isinstance(widget, widgets.Stack) else []
    for child in getattr(widget, "children", ()):
        found += _links(child)
    return found


def test_static_explorer_has_four_independent_controls_over_nested_stacks(explorer_inputs) -> None:
    videos, models = explorer_inputs
    box = attention.static_explorer(videos, models)
    picture = next(c for c in box.children if attention.PICTURE_CLASS in c._dom_classes)
    controls = {name: next(w for w in _walk(box) if cls in getattr(w, "_dom_classes", ()))
                for name, cls in attention.CONTROL_CLASSES.items()}
    assert [o[0] for o in controls["video"].options] == [v.name for v in videos]
    assert [o[0] for o in controls["model"].options] == [m.name for m in models]
    assert len(controls["map"].options) == len(attention.MAPS) and len(controls["zoom"].options) == len(attention.ZOOMS)
    by_control: dict[str, int] = {}
    for link in _links(box):
        name = next(n for n, c in controls.items() if c is link.source[0])
        assert link.source[1] == "index" and link.target[1] == "selected_index"
        by_control[name] = by_control.get(name, 0) + 1
    n_v, n_m, n_k = len(videos), len(models), len(attention.MAPS)
    # video: the outer stack; model: one stack per video; map: one per (video, model); zoom: every map's raster
    # and every (video, model)'s score plot
    assert by_control == {"video": 1, "model": n_v, "map": n_v * n_m, "zoom": n_v * n_m * (n_k + 1)}
    assert picture.link.source[0] is controls["video"] and len(picture.children) == n_v
    assert all(len(s.children) == n_m for s in picture.children)


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_explorer_state_stores_each_picture_once(explorer_inputs) -> None:
    """The page weight: zoom windows and repeated colour bars add no image data; layouts are shared."""
    from ipywidgets.embed import dependency_state

    videos, models = explorer_inputs
    box = attention.static_explorer(videos, models)
    state = dependency_state([box], drop_defaults=False)
    kinds = [s["model_name"] for s in state.values()]
    images = [w for w in _walk(box) if isinstance(w, widgets.Image)]
    distinct = {id(w) for w in images}
    assert kinds.count("ImageModel") == len(distinct)
    n_v, n_m, n_k, n_z = len(videos), len(models), len(attention.MAPS), len(attention.ZOOMS)
    rasters = {id(w) for w in images if attention.RASTER_CLASS in w._dom_classes}
    assert len(rasters) == n_v * n_m * n_k  # one per (video, model, map), however many zoom windows
    assert len(distinct) < n_v * n_m * (n_k * 3 + n_z)  # colour bars and axes shared
    assert kinds.count("LayoutModel") < 40  # shared, not one per widget
    size = len(json.dumps(state))
    assert size < 250_000 * n_v * n_m, size  # about 0.1 MB per (video, model) for these short videos


def test_explorer_refuses_empty_or_ambiguous_inputs(explorer_inputs) -> None:
    videos, models = explorer_inputs
    with pytest.raises(CstaInputError, match="at least one video"):
        attention.static_explorer([], models)
    with pytest.raises(CstaInputError, match="distinct"):
        attention.static_explorer(videos, [models[0], models[0]])


def test_split_videos_put_test_videos_first_and_pad_a_tiny_split(tiny: dict[str, Path]) -> None:
    record = {"dataset": "summe", "provenance": {"data_file": str(tiny["data"])},
              "split": {"test_keys": ["video_5"], "train_keys": ["video_1", "video_2", "video_3"]}}
    videos = attention.split_videos(record)
    assert [v.role for v in videos] == ["test", "training", "training"]
    assert "video_5, test video" in videos[0].title
    assert len(attention.split_videos(record, n_videos=4)) == 4


def test_live_explorer_computes_the_chosen_video_and_model_on_demand(tiny: dict[str, Path], checkpoints,
                                                                     one_thread) -> None:
    paths = [str(checkpoints[p]) for p in PRESETS_SHOWN]
    live = attention.LiveExplorer(", ".join(paths), tiny["data"])
    assert len(live.videos) == len(load_eccv16(tiny["data"]).videos) and len(live.models) == 2
    first = live.picture_box.children[0]
    live.controls.model.value = 1
    second = live.picture_box.children[0]
    assert second is not first and "(+) Attention Module" in second.children[0].value
    live.controls.video.value = 2
    assert live.videos[2].title in live.picture_box.children[0].children[0].value
    live.controls.model.value = 1  # a cached picture
    live.checkpoint_text.value = "/nonexistent.pt"
    live.load()
    assert "nonexistent" in live.status.value and live.models  # the error is shown, the old models stay


def test_a_video_file_is_encoded_cut_into_shots_and_flagged_against_a_surrogate_model(tmp_path: Path,
                                                                                        checkpoints) -> None:
    """A user's video file goes through the summarize pipeline's sampling, encoder and KTS shots; a model trained
    on surrogate features gets a warning in the live explorer's status line."""
    from support import need
    from video_support import make_synthetic_video

    need("weights.coral.mobilenet_v1_embedding")
    video = make_synthetic_video(tmp_path / "clip.mp4", [((200, 30, 30), 150), ((30, 200, 30), 150),
                                                        ((30, 30, 200), 150)])
    shown = attention.video_file(video, "mobilenet_v1_1024")
    assert shown.n_steps == 30 and shown.features.shape == (30, 1024) and shown.gtscore is None
    assert shown.change_points[0, 0] == 0 and shown.change_points[-1, 1] == 449 and len(shown.change_points) >= 2
    assert "mobilenet_v1_1024 features" in shown.title and "no ground truth" in shown.title
    model = attention.model_from_checkpoint(checkpoints["paper"])
    view = attention.compute_view(model, shown)
    assert view.gt_selected is None and "no ground truth" in attention.legend_html(shown, view)
    assert len(attention.scores_pngs(view, shown)) == len(attention.ZOOMS)
    warnings = attention.feature_warnings([shown], [model])
    assert len(warnings) == 1 and "surrogate" in warnings[0]
    live = attention.LiveExplorer(str(checkpoints["paper"]), video, encoder="mobilenet_v1_1024")
    assert "warning" in live.status.value and live.picture_box.children
