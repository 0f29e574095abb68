"""Vendor the book's JavaScript so the static site works with no network at all.

``python -m csta_lib.book.vendor`` fetches three pinned npm packages through npm (``npm pack``, with
npm's own registry settings and cache: no registry address is written in the project), checks each
tarball against its pinned sha512 integrity, and extracts only the files a page needs, with the packages' licences, into
``book/_vendor/`` (git-ignored; the Makefile's ``vendor`` target rebuilds it):

- ``requirejs/require.js``: the AMD loader the widget manager needs, loaded first;
- ``html-manager/embed-amd.js`` (+ its Font Awesome fonts): renders the ipywidgets state saved in the
  executed notebooks (the 1.0.x line is the one that matches ipywidgets 8);
- ``mathjax/es5/tex-mml-chtml.js`` (+ fonts and the parts MathJax loads on demand).

The folder is deliberately not called ``_static``: Jupyter Book would then inject every script under
it into every page. It is idempotent: when the stamp file matches the pins and every file is present
it returns at once.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from csta_lib.errors import CstaInputError
from csta_lib.runs.locator import PROJECT_ROOT

VENDOR_DIR = PROJECT_ROOT / "book" / "_vendor"
STAMP_NAME = "VENDOR.json"
NPM_TIMEOUT_S = 600  # seconds for one `npm pack` (a few MB): a hung registry or proxy is given up


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and which of its files the site needs."""

    name: str
    version: str
    integrity: str  # npm's "sha512-<base64>" of the tarball
    folder: str  # sub-folder of the vendor dir
    keep: tuple[str, ...]  # prefixes (relative to the package root) of the files to extract
    licence: str  # SPDX id, as the package declares it
    licence_files: tuple[str, ...]  # files in the package that carry its licence text

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


PACKAGES: tuple[NpmPackage, ...] = (
    NpmPackage(
        name="requirejs",
        version="2.3.7",
        integrity="sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        folder="requirejs",
        keep=("require.js",),
        licence="MIT",
        licence_files=(),  # the package ships no LICENSE file; its header and package.json say MIT
    ),
    NpmPackage(
        name="@jupyter-widgets/html-manager",
        # 1.0.13: the newest 1.0.x release that ships its LICENSE file (1.0.14+ dropped it from the tarball)
        version="1.0.13",
        integrity="sha512-NxJezzmgD+4aqYyEODuTtrNC6L7mA9JYPo5FOO0pWSkrLXgsadl342fdcCN5f0ZuI/OdzmRvz3QKxgk+vr0/7A==",
        folder="html-manager",
        # embed-amd.js is self-contained; the fonts are Font Awesome's, used by widget icons.
        keep=("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf"),
        licence="BSD-3-Clause",
        licence_files=("LICENSE", "dist/embed.js.LICENSE.txt"),
    ),
    NpmPackage(
        name="mathjax",
        version="3.2.2",
        integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        folder="mathjax",
        # the combined TeX/MathML -> CHTML component, its fonts, and what it loads on demand
        keep=(
            "es5/tex-mml-chtml.js",
            "es5/output/chtml/fonts/woff-v2/",
            "es5/input/tex/extensions/",
            "es5/ui/",
            "es5/a11y/",
            "es5/sre/",
        ),
        licence="Apache-2.0",
        licence_files=("LICENSE",),
    ),
)

MIT_TEXT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


class VendorError(CstaInputError):
    """The JavaScript packages could not be fetched or did not match their pinned checksum."""


def _matches(member: str, keep: tuple[str, ...]) -> bool:
    """Whether ``member`` (relative to the package root) is one of the files to keep."""
    for pattern in keep:
        if pattern.endswith("/"):
            if member.startswith(pattern):
                return True
        elif fnmatch(member, pattern) and "/" not in member[len(pattern.rsplit("/", 1)[0]) + 1 :]:
            return True
    return False


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise :class:`VendorError` unless ``data`` has npm's ``sha512-<base64>`` integrity."""
    algo, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise VendorError(f"tarball checksum mismatch: expected {integrity}, got {algo}-{actual}")


def fetch_tarball(pkg: NpmPackage, workdir: Path) -> bytes:
    """The package tarball, by ``npm pack`` (npm's cache and configuration), within :data:`NPM_TIMEOUT_S`."""
    npm = shutil.which("npm")
    if npm is None:
        why = "npm is not installed"
    else:
        try:
            proc = subprocess.run([npm, "pack", pkg.spec, "--json", "--silent"], cwd=workdir, capture_output=True,
                                  text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            why = f"npm pack took longer than {NPM_TIMEOUT_S} s"
        else:
            if proc.returncode == 0:
                filename = json.loads(proc.stdout)[0]["filename"]
                return (workdir / filename).read_bytes()
            why = "npm pack failed: " + ((proc.stderr.strip().splitlines() or ["(no message)"])[-1])
    raise VendorError(f"could not fetch {pkg.spec}: {why}. The book needs it to work offline; install npm "
                      "(apt-get install npm) and connect to the internet once, then rerun `make vendor`.")


def _licence_note(pkg: NpmPackage, header: str) -> str:
    """Licence file content for a package that ships no LICENSE file (requirejs)."""
    return (
        f"{pkg.spec} is released under the {pkg.licence} licence (package.json \"license\").\n"
        f"Its own header says:\n\n{header}\n\n{MIT_TEXT if pkg.licence == 'MIT' else ''}"
    )


def extract(pkg: NpmPackage, data: bytes, dest: Path) -> list[str]:
    """Extract the kept files and the licence files of ``pkg`` into ``dest``; return their paths."""
    written: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = member.name.split("/", 1)[1]  # drop the tarball's "package/" prefix
            wanted = _matches(rel, pkg.keep) or rel in pkg.licence_files
            if not wanted or ".." in Path(rel).parts:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            written.append(rel)
            if rel == "require.js" and not pkg.licence_files:
                header = target.read_text(encoding="utf-8").split("*/", 1)[0] + "*/"
                (dest / "LICENSE").write_text(_licence_note(pkg, header), encoding="utf-8")
                written.append("LICENSE")
    missing = [k for k in pkg.keep if not any(_matches(w, (k,)) for w in written)]
    missing += [f for f in pkg.licence_files if f not in written]
    if missing:
        raise VendorError(f"{pkg.spec}: expected files not in the tarball: {missing}")
    return sorted(written)


def _stamp_matches(vendor_dir: Path) -> bool:
    """Whether ``vendor_dir`` already holds exactly the pinned packages, every file present."""
    stamp = vendor_dir / STAMP_NAME
    if not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        return False
    for pkg in PACKAGES:
        entry = recorded.get("packages", {}).get(pkg.name)
        if not entry or entry.get("version") != pkg.version or entry.get("integrity") != pkg.integrity:
            return False
        if not all((vendor_dir / pkg.folder / f).is_file() for f in entry.get("files", [])):
            return False
    return True


def vendor(vendor_dir: Path = VENDOR_DIR, force: bool = False) -> Path:
    """Make ``vendor_dir`` hold the pinned packages' files; a no-op when it already does."""
    if not force and _stamp_matches(vendor_dir):
        return vendor_dir
    vendor_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=vendor_dir.parent))
    try:
        record: dict[str, dict[str, object]] = {}
        for pkg in PACKAGES:
            data = fetch_tarball(pkg, staging)
            check_integrity(data, pkg.integrity)
            files = extract(pkg, data, staging / "out" / pkg.folder)
            record[pkg.name] = {
                "version": pkg.version,
                "integrity": pkg.integrity,
                "licence": pkg.licence,
                "files": files,
            }
        out = staging / "out"
        (out / STAMP_NAME).write_text(json.dumps({"packages": record}, indent=1) + "\n")
        # swap the finished folder in, so an interrupted run never leaves half a vendor dir
        if vendor_dir.exists():
            shutil.rmtree(vendor_dir)
        out.rename(vendor_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return vendor_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csta_lib.book.vendor",
        description="Vendor require.js, the ipywidgets HTML manager and MathJax (pinned npm packages, "
        "with their licences) into book/_vendor so the built book works offline.",
    )
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="target folder (default: book/_vendor)")
    parser.add_argument("--force", action="store_true", help="fetch again even if already present")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        fresh = args.force or not _stamp_matches(args.dest)
        dest = vendor(args.dest, force=args.force)
    except CstaInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "vendored" if fresh else "already vendored"
    print(f"{verb}: {', '.join(p.spec for p in PACKAGES)} in {dest} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
