"""Developer sessions. CI runs: nox -s tests lint typecheck docs (see .ci/run)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYTHON = os.environ.get("NOX_PYTHON") or None  # the interpreter nox runs on, unless told


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (needs redis-server and chromium for two groups; see .ci/run)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *(session.posargs or ["-q", "-ra"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the MkDocs site with --strict."""
    session.install("-e", ".", "mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A chat, a token stream and 200 concurrent chats against the embedded server."""
    session.install("-e", ".")
    session.run("python", "-m", "llm_async.demo")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks: llm_async vs raw aiohttp and peer clients (peers optional)."""
    session.install("-e", ".[bench]")  # not dev: litellm needs aiohttp>=3.14
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """A long hypothesis run over every parser."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/perf/test_fuzz_parsers.py", "-q",
                env={"HYPOTHESIS_PROFILE": "long"})


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The 20,000-call memory soak."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/soak.py", *session.posargs)
