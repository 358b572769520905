"""P1's peers: a GDELT export normalized the way gdeltPyR does it (pandas), and the plain-Python floor.

What is modelled, from gdeltPyR (``gdelt/parallel.py`` ``_mp_worker`` and ``gdelt/base.py`` ``Search``):
``pd.read_csv(buffer, compression='zip', sep='\\t', header=None, dtype={26: 'str', 27: 'str', 28: 'str'})``,
then the 61 GDELT 2.0 column names assigned, then an output written. Here the names are passed to
``read_csv`` (same frame), the three CAMEO code columns are the ``str`` dtypes (by name rather than by
position), and the output is Parquet through pyarrow with snappy, the same format Tributary writes and
the cheapest of gdeltPyR's outputs (its JSON and CSV outputs are slower). gdeltPyR's CAMEO-description
lookup (a per-row ``apply``) is *left out*: Tributary does no such enrichment, and it would only slow
the peer. pandas runs with its defaults (C parser), as gdeltPyR does.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from common.sources.gdelt import EVENTS

#: The 61 GDELT 2.0 event column names (gdeltPyR ships the same list from the codebook).
EVENT_COLUMNS = [c.name for c in EVENTS]
#: gdeltPyR reads the CAMEO codes as strings (``dtype={26: 'str', 27: 'str', 28: 'str'}``).
CODE_DTYPES = {"EventCode": str, "EventBaseCode": str, "EventRootCode": str}
#: Bytes read from the zip per step by the floor.
CHUNK = 1 << 20


def pandas_ingest(zip_path: Path, out_path: Path, *, engine: str | None = None) -> int:
    """gdeltPyR-style: pandas reads the zipped export, then writes Parquet. Returns the rows read.

    ``engine="pyarrow"`` is an extra, stronger pandas configuration (not gdeltPyR's), shown for reference.
    """
    import pandas as pd

    kwargs = {"engine": engine} if engine else {}
    frame = pd.read_csv(
        zip_path, compression="zip", sep="\t", header=None, names=EVENT_COLUMNS, dtype=CODE_DTYPES, **kwargs
    )
    frame.to_parquet(out_path, engine="pyarrow", compression="snappy", index=False)
    return len(frame)


def floor_split(zip_path: Path) -> int:
    """The floor: unzip and split every line by tab in plain Python, counting rows. Nothing is converted."""
    rows = 0
    tail = b""
    with zipfile.ZipFile(zip_path) as archive, archive.open(archive.infolist()[0]) as member:
        while chunk := member.read(CHUNK):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                line.split(b"\t")
                rows += 1
    if tail:
        tail.split(b"\t")
        rows += 1
    return rows


def unzip_only(zip_path: Path) -> int:
    """Decompression alone (what every contender must pay at least): the bytes inflated."""
    size = 0
    with zipfile.ZipFile(zip_path) as archive, archive.open(archive.infolist()[0]) as member:
        while chunk := member.read(CHUNK):
            size += len(chunk)
    return size
