"""Run Python as on a machine where csta-book was installed without extras (`pip install .`).

    python tests/core_only.py -c CODE [ARG ...]
    python tests/core_only.py -m MODULE [ARG ...]

Every installed top-level package that the core dependencies of pyproject.toml do not bring (the extras, the test
tools and all they pull in: jupyter_book, pandas, av, ray, pytest, ...) is hidden, exactly as if it were absent:
``import`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` finds nothing. The code runs with the
repository root first on ``sys.path``, as ``python -c`` started there would. tests/test_core_install.py and
tests/cli/test_cli_main.py use it.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as metadata
import re
import runpy
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a fresh virtual environment holds before anything is installed into it.
FRESH_VENV = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``"Foo_bar>=1; extra == 'x'"`` → ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement).group(1)).lower()


def core_distributions() -> set[str]:
    """csta-book and its core requirements (pyproject.toml), with everything they require that is installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_name(r) for r in project["dependencies"]]
    found = {_name(project["name"])}  # its installed metadata may be older than pyproject.toml: not read
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.partition(";")[2]]
    return found


def blocked_modules() -> set[str]:
    """Installed top-level modules that a core-only install would not have."""
    core = core_distributions()
    return {module for module, dists in metadata.packages_distributions().items()
            if not core & {_name(d) for d in dists}
            and module not in FRESH_VENV and module not in sys.stdlib_module_names and module != "csta_lib"}


class HideModules(importlib.abc.MetaPathFinder):
    """Wraps one finder of ``sys.meta_path`` so that it never finds the named top-level modules (nor their
    submodules): to ``import`` and to ``importlib.util.find_spec`` they are absent."""

    def __init__(self, finder: object, names: set[str]) -> None:
        self.finder, self.names = finder, names

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name.partition(".")[0] in self.names:
            return None
        return self.finder.find_spec(name, path, target)

    def invalidate_caches(self) -> None:
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("-c", "-m"):
        raise SystemExit(__doc__)
    names = blocked_modules()
    already = sorted(m for m in sys.modules if m.partition(".")[0] in names)
    if already:
        raise SystemExit(f"core_only: imported before the block could start: {', '.join(already)}")
    sys.meta_path[:] = [HideModules(finder, names) for finder in sys.meta_path]
    sys.path[0] = str(ROOT)
    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 - what python -c does
    else:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
