"""Helpers to serve GDELT slots (real or sample) from a replay directory."""

from __future__ import annotations

from pathlib import Path

from common.local.samples import gdelt_listing, zip_deterministic


def gdelt_replay_dir(root: Path, csvs: list[Path], *, corrupt_md5_of: str | None = None) -> Path:
    """A replay dir whose ``gdelt/`` serves each CSV zipped, listed in lastupdate.txt and masterfilelist.txt.

    ``corrupt_md5_of``: the slot whose listed md5 is replaced by a wrong one (a verification failure).
    """
    gdelt = root / "gdelt"
    gdelt.mkdir(parents=True, exist_ok=True)
    zips = []
    for csv in csvs:
        dest = gdelt / f"{csv.name}.zip"
        zip_deterministic(csv, dest)
        zips.append(dest)
    listing = gdelt_listing(zips)
    if corrupt_md5_of:
        listing = (
            "\n".join(
                " ".join([p[0], "0" * 32, p[2]]) if corrupt_md5_of in line else line
                for line in listing.splitlines()
                for p in [line.split()]
            )
            + "\n"
        )
    (gdelt / "lastupdate.txt").write_text(listing)
    (gdelt / "masterfilelist.txt").write_text(listing)
    return root


def slot_csv(tmp: Path, slot: str, source: Path) -> Path:
    """``source``'s rows saved as ``<slot>.export.CSV`` (GDELT names the file by its slot)."""
    dest = tmp / f"{slot}.export.CSV"
    dest.write_bytes(source.read_bytes())
    return dest
