"""The one test command: ``python3 -m nox`` runs lint and every backend's tests.

Backends whose pins conflict get environments of their own (MindSpore needs
numpy<2, JAX numpy>=2; torch is pinned to the CPU build in test environments
only).  The core tests run in every backend environment, so the core is proven
against each NumPy those backends bring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["lint", "docs", "numpy", "numpy1", "torch", "mindspore", "jax"]
nox.options.reuse_existing_virtualenvs = True
CORE_TESTS = ["tests"]
TORCH = "torch==2.13.0"  # the CPU wheel this machine has on disk; any other pin pulls a CUDA build
MINDSPORE = ["mindspore==2.10.0", "numpy<2"]  # MindSpore's CPU kernels fail at the first operator on NumPy 2
JAX = ["jax==0.10.2", "jaxlib==0.10.2", "optax==0.2.8", "flax==0.12.8"]  # JAX needs numpy>=2
# The trainer callbacks, on torch (transformers' Trainer needs accelerate).
TRAINERS = ["lightning==2.6.6", "transformers==5.25.0", "accelerate==1.16.0", "keras==3.15.1"]
DOCS = ["mkdocs==1.6.1", "mkdocs-material==9.8.2"]


def _require(*backends: str) -> dict[str, str]:
    """PARAMGATE_REQUIRE_BACKENDS for a session: its frameworks, and the browser the HTML report test opens.

    Debian's chromium is installed when it is missing and apt can install it (as root, e.g. on CI);
    elsewhere the HTML browser test skips, saying how to install it.
    """
    if not shutil.which("chromium") and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        ):
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    required = [*backends, *(["chromium"] if shutil.which("chromium") else [])]
    return {"PARAMGATE_REQUIRE_BACKENDS": ",".join(required)}


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything, strict mypy on paramgate/ and the adapters (with the frameworks' types)."""
    session.install(
        "ruff>=0.6",
        "mypy>=1.10",
        "numpy>=2",
        "pluggy>=1.3",
        "typing-extensions>=4.6",
        "xxhash>=3.4",
        "pytest>=8",
        TORCH,
        *JAX,
        *TRAINERS,
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: ``mkdocs build --strict`` (broken links and missing pages fail)."""
    session.install(*DOCS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"))


@nox.session
def numpy(session: nox.Session) -> None:
    """The core and the NumPy backend (the default install: no framework)."""
    session.install(".[test]")
    session.run("pytest", *CORE_TESTS, *session.posargs, env=_require())


@nox.session
def numpy1(session: nox.Session) -> None:
    """The core and the NumPy backend on NumPy 1.x, which MindSpore still needs."""
    session.install(".[test]", "numpy<2")
    session.run("pytest", *CORE_TESTS, *session.posargs, env=_require())


@nox.session
def torch(session: nox.Session) -> None:
    """The core and the PyTorch backend on torch's CPU build: real models, real optimizer steps."""
    session.install(".[test]", TORCH, *TRAINERS)
    session.run(
        "pytest",
        *CORE_TESTS,
        *session.posargs,
        env={**_require("torch", "lightning", "transformers", "keras"), "KERAS_BACKEND": "torch"},
    )


@nox.session
def mindspore(session: nox.Session) -> None:
    """The core and the MindSpore backend (PyNative and graph mode on CPU) on NumPy 1.x."""
    session.install(".[test]", *MINDSPORE)
    session.run("pytest", *CORE_TESTS, *session.posargs, env=_require("mindspore"))


@nox.session
def jax(session: nox.Session) -> None:
    """The core and the JAX backend (jax, optax, flax) on NumPy 2."""
    session.install(".[test]", *JAX)
    session.run("pytest", *CORE_TESTS, *session.posargs, env=_require("jax"))


@nox.session
def campaign(session: nox.Session) -> None:
    """The long property-based campaign (docs/reliability.md): 10,000 examples per property, on demand."""
    session.install(".[test]", TORCH)
    session.run(
        "pytest",
        "tests/test_properties.py",
        "tests/backend_torch/test_properties_torch.py",
        "--hypothesis-show-statistics",
        *session.posargs,
        env={"PARAMGATE_HYPOTHESIS_PROFILE": "campaign"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The fingerprint benchmark (docs/benchmarks.md): not a test, run on demand with ``nox -s bench``."""
    session.install(".", TORCH)
    session.run("python", "benchmarks/bench.py", *session.posargs)
