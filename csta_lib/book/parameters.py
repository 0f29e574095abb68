"""Check and normalise a notebook's papermill parameters in one call.

``papermill -p NAME VALUE`` passes strings (numbers and True/False/None converted), ``-y``/``-f`` pass YAML
values, and the book's build passes JSON values. A reader rerunning a chapter may therefore hand us
``datasets`` as ``["tvsum"]``, ``"tvsum"``, ``"summe,tvsum"`` or ``'[tvsum]'``; every form means the same
thing. Each notebook calls :func:`check_parameters` right after its ``parameters`` cell::

    params = check_parameters(profile=profile, datasets=datasets, seeds=seeds, data_mirror=data_mirror)
    datasets, seeds = params.datasets, params.seeds

Anything that cannot be read raises one :class:`~csta_lib.errors.CstaInputError` whose message names the
parameter and the values it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from csta_lib.data.eccv16 import DATASETS, check_dataset
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET
from csta_lib.evaluation import check_budget as check_summary_budget
from csta_lib.runs.experiments import PROFILES
from csta_lib.runs.locator import MIRROR_ENV
from csta_lib.runs.store import POLICIES
from csta_lib.runs.training import parse_int_list

#: Parameters this module knows how to check; any other keyword is passed through unchanged.
CHECKED = ("profile", "datasets", "seeds", "data_mirror", "n_videos", "policy", "budget")


class ParameterError(CstaInputError):
    """A notebook parameter has a value the notebook cannot use."""


@dataclass(frozen=True)
class Parameters:
    """A notebook's parameters after checking. Keys not checked here are attributes too (``params.device``)."""

    profile: str | None = None
    datasets: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    others: Mapping[str, Any] = field(default_factory=dict)
    given: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not dataclass fields: the passed-through parameters
        others = self.__dict__.get("others", {})
        if name in others:
            return others[name]
        raise AttributeError(f"no notebook parameter {name!r}; given: {', '.join(self.__dict__.get('given', ()))}")

    def as_dict(self) -> dict[str, Any]:
        """Every given parameter with its checked value, in the order given."""
        return {name: getattr(self, name) for name in self.given}


def _yaml_value(text: str) -> Any:
    """``text`` read as YAML when it looks like a list (``[tvsum]``, ``["summe", "tvsum"]``), else ``text``."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return text
    # lazily: pyyaml is the [book] extra, and `csta data fetch --book` reads parameters (book.preflight) without it
    import yaml

    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError:
        return text


def _items(name: str, value: Any, accepted: str) -> list[Any]:
    """``value`` as a list of items: a list/tuple, a YAML list string, or a comma-separated string."""
    if isinstance(value, str):
        value = _yaml_value(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ParameterError(f"parameter {name}: cannot read {value!r}; accepted: {accepted}")


def check_datasets(value: Any) -> tuple[str, ...]:
    """``datasets`` as a tuple of known dataset names, in the order given, without repeats."""
    accepted = (f"a list of {', '.join(DATASETS)} (e.g. -y 'datasets: [tvsum]'), one name (-p datasets tvsum) "
                f"or a comma-separated string (summe,tvsum)")
    items = _items("datasets", value, accepted)
    if not items:
        raise ParameterError(f"parameter datasets: empty; accepted: {accepted}")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ParameterError(f"parameter datasets: {item!r} is not a dataset name; accepted: {accepted}")
        try:
            normal = check_dataset(item)
        except CstaInputError:
            raise ParameterError(f"parameter datasets: unknown dataset {item!r}; accepted: {accepted}") from None
        if normal not in names:
            names.append(normal)
    return tuple(names)


def check_seeds(value: Any) -> tuple[int, ...] | None:
    """``seeds`` as a tuple of non-negative integers, or None (every seed the profile runs)."""
    accepted = "None, a seed (3), a list ([0, 1]), a range (0-4) or a comma-separated string (0,1)"
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, bool):
        raise ParameterError(f"parameter seeds: cannot read {value!r}; accepted: {accepted}")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str) and not value.strip().startswith("["):
        try:  # the command line's reader of "0-4" / "0,2,3"
            items = parse_int_list(value, name="parameter seeds")
        except CstaInputError:
            raise ParameterError(f"parameter seeds: cannot read {value!r}; accepted: {accepted}") from None
    else:
        items = _items("seeds", value, accepted)
    seeds: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ParameterError(f"parameter seeds: {item!r} is not a seed (an integer >= 0); accepted: {accepted}")
        if item not in seeds:
            seeds.append(item)
    if not seeds:
        raise ParameterError(f"parameter seeds: empty; accepted: {accepted}")
    return tuple(seeds)


def check_profile(value: Any) -> str:
    """``profile`` if it is one of :data:`csta_lib.runs.experiments.PROFILES`."""
    if not isinstance(value, str) or value.strip() not in PROFILES:
        raise ParameterError(f"parameter profile: unknown profile {value!r}; accepted: {', '.join(PROFILES)}")
    return value.strip()


def check_data_mirror(value: Any) -> str | None:
    """``data_mirror`` as an existing folder's path, or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise ParameterError(f"parameter data_mirror: {str(value)!r} is not a folder; accepted: None or a folder "
                             f"laid out like data/ (see data/README.md)")
    return str(path)


def check_n_videos(value: Any) -> int | None:
    """``n_videos`` as a positive integer, or None (all)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("all", "none")):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"parameter n_videos: cannot read {value!r}; accepted: a positive integer or None (all)")
    return value


def check_policy(value: Any) -> str:
    """``policy`` as one of the training's selection policies."""
    if not isinstance(value, str) or value.strip() not in POLICIES:
        raise ParameterError(f"parameter policy: unknown selection policy {value!r}; accepted: {', '.join(POLICIES)}")
    return value.strip()


def check_budget(value: Any) -> float:
    """``budget`` (the summary's share of the video) as a float in (0, 1]; None is the paper's."""
    if value is None:
        return SUMMARY_BUDGET
    try:
        return check_summary_budget(value if isinstance(value, bool) else float(value))  # "-p budget 0.2" may be text
    except (TypeError, ValueError, CstaInputError):
        raise ParameterError(f"parameter budget: cannot read {value!r}; accepted: a fraction in (0, 1], e.g. "
                             f"{SUMMARY_BUDGET}, or None (the paper's)") from None


_CHECKERS = {"n_videos": check_n_videos, "policy": check_policy, "budget": check_budget,
             "data_mirror": check_data_mirror}


def check_parameters(**params: Any) -> Parameters:
    """Check a notebook's parameters and return them normalised (see the module docstring).

    ``profile``, ``datasets``, ``seeds``, ``data_mirror``, ``n_videos``, ``policy`` and ``budget`` are checked;
    any other keyword (``device``, ``store_dir``, ``video``, ``checkpoint``, ``encoder``, ...) is passed through.
    When ``data_mirror`` names a folder, the data locator searches it (``$CSTA_DATA_MIRROR``), so that the
    notebook's later library calls find the files there.
    """
    checked: dict[str, Any] = {}
    for name, value in params.items():
        if name == "profile":
            checked[name] = check_profile(value)
        elif name == "datasets":
            checked[name] = check_datasets(value)
        elif name == "seeds":
            checked[name] = check_seeds(value)
        elif name in _CHECKERS:
            checked[name] = _CHECKERS[name](value)
        else:
            checked[name] = value
    if checked.get("data_mirror"):
        os.environ[MIRROR_ENV] = checked["data_mirror"]
    fields = {k: checked[k] for k in ("profile", "datasets", "seeds") if k in checked}
    others = {k: v for k, v in checked.items() if k not in fields}
    return Parameters(**fields, others=MappingProxyType(others), given=tuple(params))


__all__ = ["CHECKED", "ParameterError", "Parameters", "check_budget", "check_data_mirror", "check_datasets",
           "check_n_videos", "check_parameters", "check_policy", "check_profile", "check_seeds"]
