"""CITATION.cff: valid Citation File Format 1.2.0 (checked by the reference validator, cffconvert, in a venv of its
own: it pins a jsonschema older than the one the book needs), and in agreement with pyproject.toml and with the
book's bibliography, from which the book's "How to cite" section is rendered."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from csta_lib.book.sphinx_pages import CITATION_FILE, bibliography_entry, read_citation, software_bibtex

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIBFILE = PROJECT_ROOT / "book" / "references.bib"
CFFCONVERT = "cffconvert==2.0.0"
VALIDATOR_VENV = PROJECT_ROOT / ".cache" / "cffconvert-venv"  # git-ignored; built once, reused


def cffconvert() -> Path:
    """The cffconvert executable of a venv of its own (built on first use; skips the test when pip cannot)."""
    exe = VALIDATOR_VENV / "bin" / "cffconvert"
    if exe.is_file():
        return exe
    proc = subprocess.run([sys.executable, "-m", "venv", str(VALIDATOR_VENV)], capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run([str(VALIDATOR_VENV / "bin" / "pip"), "install", "--quiet", CFFCONVERT],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not exe.is_file():
        pytest.skip(f"could not install {CFFCONVERT} into {VALIDATOR_VENV} (offline?): {proc.stderr[-300:]}")
    return exe


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(cffconvert()), "--validate", "-i", str(path)], capture_output=True, text=True)


@pytest.mark.slow
def test_citation_file_is_valid_cff_1_2(tmp_path: Path) -> None:
    proc = validate(CITATION_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid according to schema version 1.2.0" in proc.stdout + proc.stderr
    broken = read_citation()
    broken["authors"] = "the csta-book authors"  # a string where the schema wants a list of persons/entities
    (tmp_path / "CITATION.cff").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert validate(tmp_path / "CITATION.cff").returncode != 0, "the validator accepts a broken file"


def test_citation_agrees_with_pyproject() -> None:
    cff = read_citation()
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == project["version"]
    assert cff["license"] == project["license"]["text"]


def test_the_paper_is_cited_alike_in_citation_file_and_bibliography() -> None:
    """CITATION.cff's reference to the paper and the book's bibliography entry give the same work."""
    from pybtex.database import parse_file

    paper = next(r for r in read_citation()["references"] if r["type"] == "conference-paper")
    entry = parse_file(str(BIBFILE)).entries["son2024csta"]
    assert [p.last_names[0] for p in entry.persons["author"]] == [a["family-names"] for a in paper["authors"]]
    assert entry.fields["title"].replace("{", "").replace("}", "") == paper["title"]
    assert int(entry.fields["year"]) == paper["year"]
    assert entry.fields["pages"] == f"{paper['start']}--{paper['end']}"


def test_how_to_cite_blocks_come_from_the_files() -> None:
    book = software_bibtex(read_citation())
    assert book.startswith("@software{cstabook,") and "  version   = {0.1.0}," in book
    assert "  author    = {{the csta-book authors}}," in book
    paper = bibliography_entry("son2024csta", BIBFILE)
    assert paper.startswith("@inproceedings{son2024csta,") and "  pages     = {18847--18856}," in paper
    assert "  author    = {Son, Jaewon and Park, Jaehun and Kim, Kwangsu}," in paper
    assert "Son_CSTA_CNN-based" in paper, "the URL is given as written, not escaped"
    with pytest.raises(KeyError, match="no entry 'nope'"):
        bibliography_entry("nope", BIBFILE)
