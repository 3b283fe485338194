"""A PEP 517 build backend in the standard library alone, for this package only.

pip builds a project in an isolated environment into which it first installs the
backend named in pyproject.toml's ``build-system.requires``. With setuptools named there,
an offline ``pip install`` fails (nothing to install setuptools from) unless the user
knows ``--no-build-isolation``. This backend needs nothing (``requires = []``), so
``pip install ./clients/python`` works offline, on any Python from 3.9 on.

It builds a pure-Python wheel of the ``leasehold`` package, an editable wheel (a ``.pth``
file pointing at this folder) and an sdist, from pyproject.toml's ``[project]`` table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "leasehold"
# Fixed file times keep builds reproducible (zip's epoch is 1980).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _project() -> Dict[str, str]:
    """pyproject.toml's [project] table (flat string keys are all this package uses)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python 3.11+

        project = tomllib.loads(raw.decode("utf-8"))["project"]
        return {k: v for k, v in project.items() if isinstance(v, str)}
    except ImportError:
        pass
    # Python 3.9/3.10: no TOML parser in the standard library; read `key = "string"` lines.
    table = ""
    out: Dict[str, str] = {}
    for line in raw.decode("utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            table = line.strip("[] ")
        elif table == "project":
            m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$', line)
            if m:
                out[m.group(1)] = m.group(2).encode("utf-8").decode("unicode_escape")
    return out


def _names() -> Tuple[str, str, str]:
    p = _project()
    name, version = p["name"], p["version"]
    dist = re.sub(r"[-_.]+", "_", name).lower()
    return name, version, dist


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % p["name"],
        "Version: %s" % p["version"],
    ]
    if "description" in p:
        lines.append("Summary: %s" % p["description"])
    if "license" in p:
        lines.append("License: %s" % p["license"])
    if "requires-python" in p:
        lines.append("Requires-Python: %s" % p["requires-python"])
    body = ""
    if "readme" in p:
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, p["readme"]), encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def _wheel_file() -> str:
    return "Wheel-Version: 1.0\nGenerator: leasehold_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _package_files() -> List[str]:
    """The package's files, relative to ROOT, sorted; no caches."""
    found = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                found.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return found


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _write_wheel(directory: str, entries: List[Tuple[str, bytes]]) -> str:
    _, version, dist = _names()
    info = "%s-%s.dist-info" % (dist, version)
    entries = entries + [
        ("%s/METADATA" % info, _metadata().encode("utf-8")),
        ("%s/WHEEL" % info, _wheel_file().encode("utf-8")),
    ]
    record = "".join("%s,%s,%d\n" % (path, _record_hash(data), len(data)) for path, data in entries)
    record += "%s/RECORD,,\n" % info
    entries.append(("%s/RECORD" % info, record.encode("utf-8")))
    filename = "%s-%s-py3-none-any.whl" % (dist, version)
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as whl:
        for path, data in entries:
            item = zipfile.ZipInfo(path, ZIP_TIME)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(item, data)
    return filename


def _read(rel: str) -> bytes:
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


# -- PEP 517 / PEP 660 hooks ----------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def build_wheel(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    return _write_wheel(wheel_directory, [(rel.replace(os.sep, "/"), _read(rel)) for rel in _package_files()])


def build_editable(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    # A .pth line puts this folder on sys.path: edits to the sources take effect at once.
    return _write_wheel(wheel_directory, [("%s.pth" % PACKAGE, (ROOT + "\n").encode("utf-8"))])


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    _, version, dist = _names()
    base = "%s-%s" % (dist, version)
    files = ["pyproject.toml", "README.md", os.path.join("_build", "leasehold_build.py")] + _package_files()
    for folder, dirs, names in os.walk(os.path.join(ROOT, "tests")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in sorted(names) if n.endswith(".py")]
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        entries = [(rel.replace(os.sep, "/"), _read(rel)) for rel in files]
        entries.append(("PKG-INFO", _metadata().encode("utf-8")))
        for rel, data in entries:
            item = tarfile.TarInfo("%s/%s" % (base, rel))
            item.size = len(data)
            item.mode = 0o644
            item.mtime = 315532800  # 1980-01-01, as in the wheel
            tar.addfile(item, io.BytesIO(data))
    return filename
