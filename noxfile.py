"""The one test command: ``python3 -m nox`` runs lint and every backend's tests.

Backends whose pins conflict get environments of their own (MindSpore needs
numpy<2, JAX numpy>=2; torch is pinned to the CPU build in test environments
only).  The core tests run in every backend environment, so the core is proven
against each NumPy those backends bring.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "numpy", "numpy1", "torch"]
nox.options.reuse_existing_virtualenvs = True
CORE_TESTS = ["tests"]
TORCH = "torch==2.13.0"  # the CPU wheel this machine has on disk; any other pin pulls a CUDA build


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything, strict mypy on paramgate/ and the adapters (with torch's types)."""
    session.install(
        "ruff>=0.6",
        "mypy>=1.10",
        "numpy>=2",
        "pluggy>=1.3",
        "typing-extensions>=4.6",
        "xxhash>=3.4",
        "pytest>=8",
        TORCH,
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def numpy(session: nox.Session) -> None:
    """The core and the NumPy backend (the default install: no framework)."""
    session.install(".[test]")
    session.run("pytest", *CORE_TESTS, *session.posargs)


@nox.session
def numpy1(session: nox.Session) -> None:
    """The core and the NumPy backend on NumPy 1.x, which MindSpore still needs."""
    session.install(".[test]", "numpy<2")
    session.run("pytest", *CORE_TESTS, *session.posargs)


@nox.session
def torch(session: nox.Session) -> None:
    """The core and the PyTorch backend on torch's CPU build: real models, real optimizer steps."""
    session.install(".[test]", TORCH)
    session.run("pytest", *CORE_TESTS, *session.posargs, env={"PARAMGATE_REQUIRE_BACKENDS": "torch"})


@nox.session
def bench(session: nox.Session) -> None:
    """The fingerprint benchmark (docs/benchmarks.md): not a test, run on demand with ``nox -s bench``."""
    session.install(".", TORCH)
    session.run("python", "benchmarks/bench.py", *session.posargs)
