"""Developer tasks. ``nox -s tests`` is the whole test suite; see README.md."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "sdk_minimal"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

SOURCES = ["agentops_sdk", "agentops_server", "integrations", "examples", "benchmarks", "tests"]
TYPED = [
    "agentops_sdk",
    "agentops_server",
    "integrations/agentops_openai",
    "integrations/agentops_langchain",
]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, with every extra installed, on every core (pytest-xdist)."""
    session.install("-e", ".[server,dev]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *SOURCES, "noxfile.py")
    session.run("ruff", "format", "--check", *SOURCES, "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy: strict for the SDK (see pyproject.toml); benchmarks need the bench extra."""
    session.install("-e", ".[server,dev,bench]")
    session.run("mypy", *TYPED, "examples", "benchmarks")


@nox.session
def sdk_minimal(session: nox.Session) -> None:
    """The SDK on its base dependencies alone: proves it never needs a server package."""
    session.install(
        ".",
        "pytest>=8.2",
        "pytest-asyncio>=0.24",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.6",
        "hypothesis>=6.100",
    )
    session.run(
        "pytest",
        "tests/sdk",
        "-n",
        "auto",
        "-m",
        "not extras",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )
