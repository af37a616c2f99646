"""Developer sessions. CI runs: nox -s tests lint typecheck docs bench_smoke (see .ci/run).

The tools come from the PEP 735 dependency groups of ``pyproject.toml`` (``test``, ``lint``,
``typecheck``, ``docs``, ``bench``), read here with ``nox.project.dependency_groups`` so any pip
installs them.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYTHON = os.environ.get("NOX_PYTHON") or None  # the interpreter nox runs on, unless told
PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    """The project (editable, with ``extras``) and the named dependency groups."""
    project = f".[{extras}]" if extras else "."
    session.install("-e", project, *nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (a real Redis-compatible server comes from the test group; the
    browser test needs chromium, see README.md)."""
    _install(session, "test")
    session.run("pytest", *(session.posargs or ["-q", "-ra"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    _install(session, "typecheck")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the MkDocs Material site (API reference included) with --strict."""
    _install(session, "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=PYTHON)
def bench_smoke(session: nox.Session) -> None:
    """The CI regression guard: a short run against raw aiohttp that fails only on a gross
    regression (llm_async above 3× raw aiohttp's CPU per request in any row); ratios only,
    never a timed assertion."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", "--quick", "--loop", "asyncio", "--no-write",
                "--only", "aiohttp,llm_async,llm_async_full", "--fail-above", "3",
                *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A chat, a token stream and 200 concurrent chats against the embedded server."""
    session.install("-e", ".")
    session.run("python", "-m", "llm_async.demo")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks: llm_async vs raw aiohttp and peer clients (peers optional)."""
    _install(session, "bench")  # not the test group: litellm needs aiohttp>=3.14
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """A long hypothesis run over every parser."""
    _install(session, "test")
    session.run("pytest", "tests/perf/test_fuzz_parsers.py", "-q",
                env={"HYPOTHESIS_PROFILE": "long"})


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The 20,000-call memory soak."""
    _install(session, "test")
    session.run("python", "benchmarks/soak.py", *session.posargs)


@nox.session(python=PYTHON)
def tests_under_load(session: nox.Session) -> None:
    """The whole suite several times in a row next to a CPU-bound process; fails on the first
    failing round. ``nox -s tests_under_load -- --rounds 3 --burners 1 [-- pytest args]``."""
    _install(session, "test")
    session.run("python", "tests/under_load.py", *(session.posargs or ["--rounds", "3"]))
