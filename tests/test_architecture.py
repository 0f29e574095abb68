"""The package's layers (CONTRIBUTING.md): the import contract in pyproject.toml holds, and the public face
of ``csta_lib`` is what its docstring promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import csta_lib

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_import_contract_declares_three_layers_and_holds() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    assert len(layers["layers"]) >= 3
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: install the [dev] extra (pip install -e '.[dev]')")
    proc = subprocess.run([lint, "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_public_face_names_resolve_to_their_homes() -> None:
    from csta_lib import config, evaluation, kts, model

    assert csta_lib.build_model is model.build_model
    assert csta_lib.load_official_state_dict is model.load_official_state_dict
    assert csta_lib.PRESETS is config.PRESETS
    assert csta_lib.generate_summary is evaluation.generate_summary
    assert csta_lib.rank_correlation is evaluation.rank_correlation
    assert csta_lib.change_points is kts.change_points
    assert set(csta_lib.__all__) <= set(dir(csta_lib))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        csta_lib.nonexistent  # noqa: B018


def test_importing_the_package_imports_no_torch() -> None:
    code = "import sys, csta_lib; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
