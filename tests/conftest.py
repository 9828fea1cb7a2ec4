from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from paramgate_numpy.demo import build_model


@pytest.fixture
def seed_model() -> list[dict[str, Any]]:
    """The walkthrough's four parameter dicts: frozen backbone, trainable head."""
    return build_model()


# Backend test folders run where their framework is installed (each nox session
# installs one).  A session that sets PARAMGATE_REQUIRE_BACKENDS fails loudly
# instead of skipping when its framework is missing.
BACKENDS = {
    "backend_torch": "torch",
    "backend_mindspore": "mindspore",
    "backend_jax": "jax",
    "backend_keras": "keras",
    "trainer_lightning": "lightning",
    "trainer_transformers": "transformers",
}
_required = {name for name in os.environ.get("PARAMGATE_REQUIRE_BACKENDS", "").split(",") if name}
collect_ignore = []
for folder, module in BACKENDS.items():
    if importlib.util.find_spec(module) is None:
        if module in _required:
            raise RuntimeError(f"PARAMGATE_REQUIRE_BACKENDS names {module}, but it is not installed here")
        collect_ignore.append(folder)
