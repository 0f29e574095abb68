"""The repository is self-contained: its specification is the book's method page (book/method.md).

No README, CONTRIBUTING, library, notebook or book file may send a reader to documentation outside the
repository (the read-only ``../shared/reference`` mirror, or its "reference §x.y" sections); code cites the
method page by its section labels (``method-<step>``), and every label cited exists on that page.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "CONTRIBUTING.md", "csta_lib", "notebooks", "book")
# third-party files and build outputs inside the scanned folders
SKIPPED_DIRS = {"_vendor", "_generated", "_build", "__pycache__", ".ipynb_checkpoints"}
METHOD_PAGE = PROJECT_ROOT / "book" / "method.md"

FORBIDDEN = re.compile(
    r"shared/reference"  # the mirror beside the repository
    r"|csta_reference"  # its file name, with or without .md
    r"|reference\s*§"  # "reference §4.1"
    r"|\breference\s+\d+(\.\d+)+"  # "reference 4.1"
    r"|§\s*\d",  # "§4.1", "§ 2" anywhere
    re.IGNORECASE,
)
METHOD_LABEL = re.compile(r"\bmethod-[a-z0-9]+(?:-[a-z0-9]+)*")
DEFINED_LABEL = re.compile(r"^\((method-[a-z0-9-]+)\)=\s*$", re.MULTILINE)


def text_files(root: Path, names: tuple[str, ...] = SCANNED) -> list[Path]:
    """Every readable text file under ``names`` (files or folders of ``root``), skipping vendored/built ones."""
    out: list[Path] = []
    for name in names:
        path = root / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            if SKIPPED_DIRS.intersection(candidate.relative_to(root).parts):
                continue
            try:
                candidate.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary (images, fonts)
            out.append(candidate)
    return out


def find(pattern: re.Pattern[str], root: Path, names: tuple[str, ...] = SCANNED) -> list[tuple[str, int, str]]:
    """``(relative path, line number, match)`` of every match of ``pattern`` in the scanned files."""
    hits = []
    for path in text_files(root, names):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in pattern.finditer(line):
                hits.append((path.relative_to(root).as_posix(), number, match.group(0)))
    return hits


def test_nothing_points_outside_the_repository_for_documentation() -> None:
    hits = find(FORBIDDEN, PROJECT_ROOT)
    assert not hits, "cite the book's method page (book/method.md, section method-<step>) instead of:\n" + "\n".join(
        f"{path}:{line}: {text!r}" for path, line, text in hits
    )


def test_every_cited_method_section_exists() -> None:
    defined = set(DEFINED_LABEL.findall(METHOD_PAGE.read_text(encoding="utf-8")))
    assert {"method-input", "method-skip", "method-selection", "method-metrics"} <= defined
    cited = find(METHOD_LABEL, PROJECT_ROOT, SCANNED + ("_toc.yml",))
    missing = [(path, line, label) for path, line, label in cited if label not in defined]
    assert not missing, "no such section on book/method.md:\n" + "\n".join(
        f"{path}:{line}: {label}" for path, line, label in missing
    )


def test_method_page_opens_with_its_label() -> None:
    assert METHOD_PAGE.read_text(encoding="utf-8").splitlines()[0] == "(method)="


@pytest.mark.parametrize(
    "text",
    [
        "see ../shared/reference/csta_reference.md",
        "the official init (reference §1.2)",
        "as in reference 4.1 step 4",
        "the table of §5.4",
        "Reference § 2 defaults",
        "csta_reference.md lists it",
    ],
)
def test_the_scan_catches_every_citation_form(tmp_path: Path, text: str) -> None:
    (tmp_path / "csta_lib").mkdir()
    (tmp_path / "csta_lib" / "x.py").write_text(f'"""Doc."""\n# {text}\n', encoding="utf-8")
    assert {(p, n) for p, n, _ in find(FORBIDDEN, tmp_path)} == {("csta_lib/x.py", 2)}


def test_the_scan_accepts_method_citations_and_skips_vendored_files(tmp_path: Path) -> None:
    (tmp_path / "csta_lib").mkdir()
    (tmp_path / "csta_lib" / "x.py").write_text(
        "# see the book's method page, section method-skip; reference rows; 4.1 GMACs\n", encoding="utf-8"
    )
    (tmp_path / "book" / "_vendor").mkdir(parents=True)
    (tmp_path / "book" / "_vendor" / "lib.js").write_text("// §1 of the licence\n", encoding="utf-8")
    (tmp_path / "book" / "font.woff").write_bytes(b"\xff\xfe\x00\xa7 1")
    assert find(FORBIDDEN, tmp_path) == []


# Package registries' hosts (backslashes keep this file from matching itself): packages come through their
# clients (pip, npm) and those clients' own configuration, never by an address written in the repository.
REGISTRY_HOST = re.compile(
    r"files\.pythonhosted\.org|(?<![\w.-])(test\.)?pypi\.(org|python\.org)|registry\.npmjs\.org|registry\.yarnpkg\.com"
    r"|(?<![\w.-])npmjs\.(com|org)|(conda|repo)\.anaconda\.(org|com)|(?<![\w.-])anaconda\.org|(?<![\w.-])crates\.io"
    r"|proxy\.golang\.org|rubygems\.org|repo1?\.maven(\.apache)?\.org|download\.pytorch\.org/whl|npmmirror\.com",
    re.IGNORECASE,
)


def tracked_files() -> list[str]:
    """The repository's tracked files (``git ls-files``; the whole tree but its ignored build folders without git)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True,
                                timeout=60).stdout.decode().split("\0")
        return [name for name in listed if name]
    except (OSError, subprocess.SubprocessError):
        skipped = SKIPPED_DIRS | {".git", ".venv", "results", "data", ".cache"}
        return [p.relative_to(PROJECT_ROOT).as_posix() for p in PROJECT_ROOT.rglob("*")
                if p.is_file() and not skipped.intersection(p.relative_to(PROJECT_ROOT).parts)]


def test_no_package_registry_host_is_written_in_the_repository() -> None:
    hits = []
    for name in tracked_files():
        path = PROJECT_ROOT / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary, or deleted in the working tree
        hits += [f"{name}:{n}: {m.group(0)}" for n, line in enumerate(text.splitlines(), 1)
                 for m in REGISTRY_HOST.finditer(line)]
    assert not hits, "registry hosts written in the repository (use the package's client):\n" + "\n".join(hits)


def test_the_registry_check_sees_what_it_must() -> None:
    def host(*parts: str) -> str:  # joined here, so that this file names no registry itself
        return ".".join(parts)

    for line in (f"https://{host('files', 'pythonhosted', 'org')}/packages/x.whl", f"https://{host('pypi', 'org')}/simple/",
                 f"https://{host('registry', 'npmjs', 'org')}", f"--index-url https://{host('download', 'pytorch', 'org')}/whl/cpu"):
        assert REGISTRY_HOST.search(line), line
    for line in ("https://download.pytorch.org/models/resnet18-f37072fd.pth", "mypypi.org.example", "PyPI and npm"):
        assert not REGISTRY_HOST.search(line), line
