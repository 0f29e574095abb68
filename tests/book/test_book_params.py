"""csta_lib.book.parameters: every form papermill (-p / -y) or the book's build passes reads the same."""

from __future__ import annotations

import os

import pytest

from csta_lib.book.parameters import Parameters, ParameterError, check_parameters
from csta_lib.errors import CstaInputError


@pytest.mark.parametrize("value, expected", [
    (["summe", "tvsum"], ("summe", "tvsum")),
    (("tvsum",), ("tvsum",)),
    ("tvsum", ("tvsum",)),                 # papermill -p datasets tvsum
    ("TVSum", ("tvsum",)),
    ("summe,tvsum", ("summe", "tvsum")),
    (" tvsum , summe ", ("tvsum", "summe")),
    ('["tvsum"]', ("tvsum",)),             # papermill -p datasets '["tvsum"]'
    ("[tvsum]", ("tvsum",)),               # a YAML list typed as a string
    ("[summe, tvsum, summe]", ("summe", "tvsum")),
])
def test_datasets_forms(value, expected):
    assert check_parameters(datasets=value).datasets == expected


@pytest.mark.parametrize("value", ["eccv16.[", "youtube", ["tvsum", "ovp"], [], "", 3, None, {"tvsum": 1}, [["tvsum"]]])
def test_bad_datasets_name_the_parameter_and_accepted_values(value):
    with pytest.raises(ParameterError) as info:
        check_parameters(datasets=value)
    message = str(info.value)
    assert "datasets" in message and "summe" in message and "tvsum" in message
    assert "\n" not in message


@pytest.mark.parametrize("value, expected", [
    (None, None), ("None", None), (3, (3,)), ([0, 1], (0, 1)), ("0-4", (0, 1, 2, 3, 4)), ("0,1", (0, 1)),
    ("[2, 0]", (2, 0)), ("1-2,5", (1, 2, 5)), ([1, 1, 2], (1, 2)),
])
def test_seeds_forms(value, expected):
    assert check_parameters(seeds=value).seeds == expected


@pytest.mark.parametrize("value", ["a-b", "4-1", -1, [0, "x"], True, 1.5, "[]", [-2]])
def test_bad_seeds(value):
    with pytest.raises(CstaInputError, match="parameter seeds.*accepted"):
        check_parameters(seeds=value)


def test_profile_checked_against_experiments():
    from csta_lib.runs.experiments import PROFILES

    for name in PROFILES:
        assert check_parameters(profile=name).profile == name
    with pytest.raises(ParameterError, match="parameter profile.*" + ", ".join(PROFILES)):
        check_parameters(profile="fast")


def test_other_keys_pass_through_as_attributes():
    params = check_parameters(profile="smoke", datasets="tvsum", device="cpu", store_dir=None, video="videos.x",
                              checkpoint=None, encoder="googlenet")
    assert isinstance(params, Parameters)
    assert params.device == "cpu" and params.store_dir is None and params.video == "videos.x"
    assert params.encoder == "googlenet" and params.checkpoint is None
    assert list(params.as_dict()) == ["profile", "datasets", "device", "store_dir", "video", "checkpoint", "encoder"]
    with pytest.raises(AttributeError, match="no notebook parameter 'budget'"):
        params.budget
    with pytest.raises(Exception):  # frozen
        params.profile = "paper"


@pytest.mark.parametrize("name, good, normal, bad", [
    ("n_videos", "3", 3, 0),
    ("n_videos", "all", None, "many"),
    ("policy", "val", "val", "best"),
    ("budget", "0.15", 0.15, 1.5),
    ("budget", None, 0.15, "none"),  # None: the paper's budget
])
def test_checked_scalars(name, good, normal, bad):
    assert getattr(check_parameters(**{name: good}), name) == normal
    with pytest.raises(ParameterError, match=f"parameter {name}.*accepted"):
        check_parameters(**{name: bad})


def test_data_mirror_points_the_locator_at_the_folder(tmp_path, monkeypatch):
    from csta_lib.runs.locator import MIRROR_ENV, data_roots

    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert check_parameters(data_mirror=None).data_mirror is None
    assert MIRROR_ENV not in os.environ
    params = check_parameters(data_mirror=str(tmp_path))
    assert params.data_mirror == str(tmp_path)
    assert tmp_path in data_roots()
    with pytest.raises(ParameterError, match="parameter data_mirror.*not a folder"):
        check_parameters(data_mirror=str(tmp_path / "missing"))
