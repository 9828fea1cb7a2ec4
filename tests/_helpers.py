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
