"""Packaging: compatible ranges in pyproject.toml, exact pins in constraints.txt, exact pins in what ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from common.ops import staging
from common.ops.plan_model import PlanError

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _all_deps() -> list[Requirement]:
    extras = [d for group in PYPROJECT["optional-dependencies"].values() for d in group]
    return [Requirement(d) for d in [*PYPROJECT["dependencies"], *extras]]


@pytest.mark.parametrize("req", _all_deps(), ids=str)
def test_every_dependency_is_a_range_with_an_exact_pin_inside_it(req: Requirement) -> None:
    assert not any(spec.operator in ("==", "===") for spec in req.specifier), f"{req}: a range, not a pin"
    assert any(spec.operator == "<" for spec in req.specifier), f"{req}: bounded above (the next major)"
    pins = {_norm(k): v for k, v in staging.pins(REPO / "constraints.txt").items()}
    assert _norm(req.name) in pins, f"{req.name} has no pin in constraints.txt (make constraints)"
    assert req.specifier.contains(pins[_norm(req.name)].split("==")[1]), f"{pins[_norm(req.name)]} is outside {req}"


def test_constraints_hold_pins_only_and_name_no_index() -> None:
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+", line) for line in lines)


@pytest.mark.parametrize("function", staging.ENTRY_POINTS)
def test_staged_requirements_are_the_constraints_exact_pins(function: str) -> None:
    pins = staging.pins(REPO / "constraints.txt")
    lines = [line for line in staging.requirements(function).splitlines() if not line.startswith("#")]
    assert lines and all(line in pins.values() for line in lines)


def test_a_dependency_without_a_pin_is_refused(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("pydantic==2.14.3\n")
    with pytest.raises(PlanError, match="no pin for"):
        staging.requirements("status", REPO / "pyproject.toml", constraints)
    constraints.write_text("pydantic>=2\n")
    with pytest.raises(PlanError, match="not an exact pin"):
        staging.pins(constraints)


def test_make_installs_from_the_constraints_and_demo_without_extras() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    assert re.search(r"^demo: venv ", makefile, re.M), "make demo installs the runtime only"
    assert re.search(r"^test: venv-all ", makefile, re.M), "the suite runs the benchmark smoke tests too"
