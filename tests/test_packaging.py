"""The package metadata, the conda environment and the torchvision shim agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(_normalise(d) for d in deps)


def _environment_requirements() -> tuple[list, dict[str, str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, dict(_normalise(d) for d in pip)


def test_environment_yml_pins_the_same_packages_as_pyproject():
    conda, pip = _environment_requirements()
    assert "python=3.11" in conda
    assert pip == _pyproject_requirements()


def test_design_card_pins():
    deps = _pyproject_requirements()
    assert deps["torch"] == "==2.13.0"
    assert deps["torchvision"] == "==0.28.0"
    assert deps["jupyter-book"] in (">=1.0.4,<2", "<2,>=1.0.4")
    for name in ("papermill", "h5py", "scipy", "seaborn", "ipywidgets", "ipykernel", "tqdm", "av", "pytest"):
        assert deps[name].startswith("=="), f"{name} is not pinned"


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
        "from csta_lib._torchvision import import_torchvision, operators_stubbed\n"
        "tv = import_torchvision()\n"
        "m = tv.models.resnet18(weights=None).eval()\n"
        "import torch\n"
        "print(m(torch.zeros(1, 3, 32, 32)).shape[-1], operators_stubbed())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1000"
    import torch

    # Beside the CPU wheel the operators cannot load, so the stubs must be in use; elsewhere they must not be.
    assert out[1] == str(torch.version.cuda is None)


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "csta_lib.cli", "--help"], capture_output=True, text=True, check=True)
    assert "csta" in out.stdout
