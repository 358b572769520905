"""P3's child process: ingest one zipped GDELT export as production does, then print the RSS high-water mark.

    python -m tests.bench.rss EXPORT.zip OUT.parquet [BLOCK_SIZE]

``BLOCK_SIZE`` (bytes) overrides ``common.sources.gdelt.BLOCK_SIZE``, to measure a proposed value.

Prints one JSON object: ``rows``, ``baseline_kb`` (peak RSS after the imports, before ingesting),
``peak_kb`` (peak RSS at the end) and ``arrow_pool_peak_kb`` (the most Arrow's own memory pool held),
in KiB. The peak is the kernel's high-water mark ``VmHWM`` from ``/proc/self/status``, not
``getrusage().ru_maxrss``: on Linux that survives ``execve``, so it reports the parent's RSS at fork
time when that was larger (the benchmark's own process, with pandas loaded).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def high_water_kb() -> int:
    """This process' peak resident set size, KiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    zip_path, out_path = Path(argv[0]), Path(argv[1])
    import pyarrow.parquet

    import common.sources.gdelt as gdelt
    from common.runtime.ingest import write_parquet
    from common.sources.gdelt import EVENTS, parse_tsv

    if len(argv) > 2:
        gdelt.BLOCK_SIZE = int(argv[2])

    baseline = high_water_kb()
    with zip_path.open("rb") as stream:
        rows, _skipped = write_parquet(parse_tsv(stream, EVENTS, label=zip_path.name), EVENTS, out_path)
    peak = high_water_kb()
    import pyarrow as pa

    pool_kb = pa.default_memory_pool().max_memory() // 1024
    print(json.dumps({"rows": rows, "baseline_kb": baseline, "peak_kb": peak, "arrow_pool_peak_kb": pool_kb}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
