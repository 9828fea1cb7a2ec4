from __future__ import annotations

from typing import Any

import pytest

from paramgate_numpy.demo import build_model


@pytest.fixture
def seed_model() -> list[dict[str, Any]]:
    """The walkthrough's four parameter dicts: frozen backbone, trainable head."""
    return build_model()
