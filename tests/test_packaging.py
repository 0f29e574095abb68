"""The package metadata, its extras, the conda environment, the Makefile, the command line's table of extras and
the torchvision shim agree with each other."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from core_only import blocked_modules
from csta_lib.cli import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
CORE = {"torch", "torchvision", "numpy", "scipy", "h5py", "tqdm"}


def _normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject_requirements() -> dict[str, str]:
    """The core requirements: what `pip install .` installs."""
    return dict(_normalise(d) for d in _project()["dependencies"])


def _extras() -> dict[str, dict[str, str]]:
    return {extra: dict(_normalise(d) for d in deps) for extra, deps in _project()["optional-dependencies"].items()}


def _all_requirements() -> dict[str, str]:
    """The core and every extra (a package in several extras must have the same pin in each)."""
    merged = _pyproject_requirements()
    for extra, deps in _extras().items():
        for name, spec in deps.items():
            assert merged.setdefault(name, spec) == spec, f"{name} is pinned differently in [{extra}]"
    return merged


def _environment_requirements() -> tuple[list, dict[str, str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, dict(_normalise(d) for d in pip)


def test_environment_yml_pins_the_same_packages_as_pyproject():
    conda, pip = _environment_requirements()
    assert "python=3.11" in conda
    assert pip == _all_requirements()


def test_design_card_pins():
    deps = _all_requirements()
    assert deps["torch"] == "==2.13.0"
    assert deps["torchvision"] == "==0.28.0"
    assert deps["jupyter-book"] in (">=1.0.4,<2", "<2,>=1.0.4")
    for name, spec in deps.items():
        assert name == "jupyter-book" or spec.startswith("=="), f"{name} is not pinned"


def test_the_core_install_is_the_method_and_the_command_line():
    assert set(_pyproject_requirements()) == CORE
    extras = _extras()
    assert set(extras) == {"book", "video", "ray", "dev"}
    assert {"jupyter-book", "papermill", "pandas", "matplotlib", "seaborn", "ipywidgets", "ipykernel"} <= set(
        extras["book"])
    assert {"av", "ai-edge-litert"} <= set(extras["video"])
    assert set(extras["ray"]) == {"ray"}
    assert {"pytest", "import-linter", "websocket-client"} <= set(extras["dev"])


def test_make_installs_every_extra():
    line = re.search(r"^EXTRAS\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert set(line.group(1).split(",")) == set(_extras())
    assert "-e '.[$(EXTRAS)]'" in (ROOT / "Makefile").read_text()


def test_the_command_lines_table_of_extras_lists_every_optional_package_the_library_imports():
    imported = set()
    for path in (ROOT / "csta_lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.partition(".")[0])
    assert imported & blocked_modules() == set(EXTRAS)


def test_the_command_lines_table_of_extras_agrees_with_pyproject():
    """Each optional module's package is in the extra the command line names (or required by a package there)."""
    extras = _extras()
    providers = metadata.packages_distributions()
    for module, extra in EXTRAS.items():
        assert extra in extras, f"{module}: no extra [{extra}]"
        dists = {_normalise(d)[0] for d in providers.get(module, [])}
        assert dists, f"{module} is not installed here, so its extra cannot be checked"
        pinned = set(extras[extra])
        required = {_normalise(r)[0] for name in pinned for r in (metadata.requires(name) or [])}
        assert dists & (pinned | required), f"{module} ({', '.join(dists)}) does not come with [{extra}]"
        assert not dists & CORE, f"{module} comes with the core install"


def test_console_script_points_at_the_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"csta": "csta_lib.cli:main"}


def test_torchvision_is_imported_in_exactly_one_place():
    offenders = []
    for path in (ROOT / "csta_lib").rglob("*.py"):
        if path.name == "_torchvision.py":
            continue
        if re.search(r"^\s*(import|from)\s+torchvision\b", path.read_text(), re.M):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_torchvision_shim_imports_models_in_a_fresh_process():
    code = (
        "import sys\n"
        "from csta_lib._torchvision import import_torchvision\n"
        "tv = import_torchvision()\n"
        "m = tv.models.resnet18(weights=None).eval()\n"
        "import torch\n"
        "stub = sys.modules.get('torchvision._meta_registrations')\n"
        "print(m(torch.zeros(1, 3, 32, 32)).shape[-1], getattr(stub, '__file__', None) is None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1000"
    import torch

    # Beside the CPU wheel the operators cannot load, so the stubs must be in use; elsewhere they must not be.
    assert out[1] == str(torch.version.cuda is None)


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "csta_lib.cli", "--help"], capture_output=True, text=True, check=True)
    assert "csta" in out.stdout
