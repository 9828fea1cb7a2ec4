"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def flip_bit(array: np.ndarray, flat_byte: int, bit: int) -> None:
    """Flip one bit of ``array`` in place, through a byte view of its memory."""
    view = array.reshape(-1).view(np.uint8)
    view[flat_byte] ^= np.uint8(1 << bit)


class AdapterPlugin:
    """A third-party plugin whose ``paramgate_adapter`` hook returns ``make()``.

    ``tryfirst=True`` makes it claim models before the builtin NumPy adapter,
    the way a plugin overriding a builtin would.
    """

    def __init__(self, make, *, tryfirst: bool = True) -> None:
        import paramgate

        def paramgate_adapter():
            return make()

        self.paramgate_adapter = paramgate.hookimpl(tryfirst=tryfirst)(paramgate_adapter)


def demo_json(framework: str, *, buggy: bool = False) -> tuple[int, dict]:
    """``paramgate demo --framework FRAMEWORK --json`` in-process: the exit code and both reports."""
    import io
    import json

    import paramgate
    from paramgate.demo import run_demo

    pm = paramgate.get_plugin_manager()
    out = io.StringIO()
    code = run_demo(pm.hook.paramgate_demo_kit(framework=framework), out, plugins=pm, buggy=buggy, as_json=True)
    return code, json.loads(out.getvalue())


def framework_neutral(audit: dict) -> dict:
    """The audit JSON without what only names the framework: its name, dtypes, optimizer class and options."""
    import json

    audit = json.loads(json.dumps(audit))
    audit["framework"] = None
    for p in audit["params"]:
        p["dtype"] = None
    audit["optimizer"]["type"] = None
    for g in audit["optimizer"]["groups"]:
        g["options"] = None
    return audit


def expected_placement(groups: list, foreign: list) -> tuple[list, dict[int, int], dict[int, int]]:
    """Ground truth for property tests, from a generated optimizer alone (never through paramgate).

    ``groups`` holds each group's member objects, ``foreign`` the labels of members from no model.
    Returns the group-level findings (PG003, PG007) as ``(code, name, severity)``, each object's first
    group, and how many slots it takes across the groups (keys: ``id(obj)``).
    """
    findings: list = []
    first_group: dict[int, int] = {}
    slots: dict[int, int] = {}
    for g, members in enumerate(groups):
        for m in members:
            slots[id(m)] = slots.get(id(m), 0) + 1
            first_group.setdefault(id(m), g)
    if not any(groups):
        findings.append(("PG003", "optimizer", "error"))
    else:
        findings += [("PG003", f"group {g}", "warning") for g, members in enumerate(groups) if not members]
    findings += [("PG007", label, "error") for label in foreign]
    return findings, first_group, slots


def hypothesis_profile() -> tuple[str, object]:
    """The property tests' hypothesis settings: ``PARAMGATE_HYPOTHESIS_PROFILE`` picks one, "ci" by default.

    "ci" is small and derandomized (the same examples on every run, no example database written
    into the checkout); "campaign" is 10,000 random examples per property (docs/reliability.md).
    """
    import os

    from hypothesis import HealthCheck, settings

    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile(
        "ci",
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=slow,
    )
    settings.register_profile(
        "campaign", max_examples=10_000, deadline=None, database=None, print_blob=True, suppress_health_check=slow
    )
    name = os.environ.get("PARAMGATE_HYPOTHESIS_PROFILE", "ci")
    return name, settings.get_profile(name)
