"""The project's own small upstream samples (written for Tributary, in the publishers' formats).

:func:`materialize` lays them out as a replay directory (see ``common.local.recorded``): files that upstream
serves zipped are zipped here with a fixed timestamp, so their md5 (listed in GDELT's
``lastupdate.txt``) is stable from run to run.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

HERE = Path(__file__).parent


def zip_deterministic(src: Path, dest: Path) -> None:
    """Zip ``src`` alone into ``dest`` with a fixed timestamp (same bytes every time)."""
    info = zipfile.ZipInfo(src.name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr(info, src.read_bytes())


def gdelt_listing(files: list[Path], base: str = "http://data.gdeltproject.org/gdeltv2") -> str:
    """``size md5 url`` lines, as GDELT's lastupdate.txt and masterfilelist.txt have them."""
    lines = []
    for f in files:
        data = f.read_bytes()
        lines.append(f"{len(data)} {hashlib.md5(data, usedforsecurity=False).hexdigest()} {base}/{f.name}")
    return "\n".join(lines) + "\n"


def materialize(root: Path) -> Path:
    """Write the replay directory for every source's samples under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    gdelt = root / "gdelt"
    gdelt.mkdir(exist_ok=True)
    zips = []
    for csv in sorted((HERE / "gdelt").glob("*.CSV")) + sorted((HERE / "gdelt").glob("*.csv")):
        dest = gdelt / f"{csv.name}.zip"
        zip_deterministic(csv, dest)
        zips.append(dest)
    listing = gdelt_listing(zips)
    (gdelt / "lastupdate.txt").write_text(listing)
    (gdelt / "masterfilelist.txt").write_text(listing)
    for source_dir in sorted(p for p in HERE.iterdir() if p.is_dir() and p.name not in ("gdelt", "__pycache__")):
        shutil.copytree(source_dir, root / source_dir.name, dirs_exist_ok=True)
    return root
