"""The GDELT inputs of P1 and P3: the real slot, and larger synthetic ones made from its rows.

The real slot is read from ``../shared/fixtures`` (never copied into the repo) and zipped here as GDELT
serves it. The Nx files repeat its rows N times, each copy with distinct ``GLOBALEVENTID``s, so they are
valid exports of N times the rows. Without the fixtures, the base rows are the project's own 24-row
sample repeated to the size of a real slot (and the real-slot measure is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.local.samples import HERE as SAMPLES
from common.local.samples import zip_deterministic

REPO = Path(__file__).resolve().parents[2]
REAL_SLOT = "20191024143000"
REAL_CSV = REPO.parent / "shared" / "fixtures" / "gdelt" / f"{REAL_SLOT}.export.CSV"
SAMPLE_CSV = SAMPLES / "gdelt" / "20240115120000.export.CSV"
#: Rows in a real 15-minute slot (the fixture has 2,111); the sample is repeated to about this many.
SLOT_ROWS = 2111
#: Added to GLOBALEVENTID per copy, beyond any real id (about 9e8 in 2019).
ID_STRIDE = 10**10


@dataclass
class GdeltFile:
    """One zipped GDELT export ready to ingest."""

    label: str
    zip_path: Path
    rows: int
    csv_bytes: int


def base_rows(sample: bool = False) -> tuple[list[bytes], str]:
    """The rows one slot is made of, and where they come from."""
    if not sample and REAL_CSV.exists():
        return REAL_CSV.read_bytes().splitlines(keepends=True), f"real slot {REAL_SLOT} (../shared/fixtures)"
    lines = SAMPLE_CSV.read_bytes().splitlines(keepends=True)
    copies = -(-SLOT_ROWS // len(lines)) if not sample else 1
    rows = repeat_rows(lines, copies)
    origin = "common/local/samples/gdelt (24 rows)" if sample else f"common/local/samples/gdelt repeated x{copies}"
    return rows, origin


def repeat_rows(lines: list[bytes], copies: int) -> list[bytes]:
    """``lines`` ``copies`` times; copy k adds k x ID_STRIDE to each GLOBALEVENTID (the first field)."""
    out = []
    for k in range(copies):
        for line in lines:
            first, tab, rest = line.partition(b"\t")
            out.append(str(int(first) + k * ID_STRIDE).encode() + tab + rest if k else line)
    return out


def write_zip(rows: list[bytes], folder: Path, label: str, slot: str = REAL_SLOT) -> GdeltFile:
    """``rows`` as ``<slot>.export.CSV`` zipped alone, as GDELT publishes it."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{slot}.export.CSV"
    csv.write_bytes(b"".join(rows))
    dest = folder / f"{slot}.export.CSV.zip"
    zip_deterministic(csv, dest)
    size = csv.stat().st_size
    csv.unlink()
    return GdeltFile(label=label, zip_path=dest, rows=len(rows), csv_bytes=size)


def gdelt_inputs(workdir: Path, scales: tuple[int, ...] = (1, 10), *, sample: bool = False) -> dict[int, GdeltFile]:
    """Zipped exports of the base rows x1, x10, ... (``scales``). ``sample``: the 24-row sample (smoke test)."""
    lines, origin = base_rows(sample)
    out = {}
    for scale in scales:
        label = origin if scale == 1 else f"{origin} x{scale}, distinct GLOBALEVENTIDs"
        out[scale] = write_zip(repeat_rows(lines, scale), workdir / f"gdelt-x{scale}", label)
    return out


def have_real_slot() -> bool:
    return REAL_CSV.exists()
