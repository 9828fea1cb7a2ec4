"""The pytest plugin: real pytest runs (pytester) of small test files that use it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from paramgate.pytest_plugin import _count_differing

pytest_plugins = ["pytester"]

PLUGIN: tuple[str, ...] = ()  # installed paramgate registers the plugin itself (entry point pytest11 "paramgate")
STRICT = ("-p", "no:cacheprovider", "-W", "error", "--strict-markers")

NUMPY_MODEL = """
    import numpy as np
    import pytest
    from paramgate_numpy import Momentum, Parameter


    def build():
        return [
            Parameter(np.arange(6, dtype=np.float32).reshape(2, 3), "backbone.w", requires_grad=False),
            Parameter(np.zeros(3), "backbone.b", requires_grad=False),
            Parameter(np.ones(2), "head.w"),
        ]
"""


def _numpy(code: str) -> str:
    return textwrap.dedent(NUMPY_MODEL) + textwrap.dedent(code)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*STRICT, *args)


def test_a_clean_step_passes_and_a_leak_fails_with_one_line_per_changed_parameter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_train=_numpy(
            """

        def test_clean(paramgate_guard):
            model = build()
            opt = Momentum([model[2]], 0.1, 0.9, weight_decay=0.01)
            with paramgate_guard(model, opt) as gate:
                opt([np.ones(2)])
            assert gate.report.ok


        def test_leak(paramgate_guard):
            model = build()
            opt = Momentum(model, 0.1, 0.9, weight_decay=0.01)
            with paramgate_guard(model, opt):
                opt([np.zeros((2, 3)), np.zeros(3), np.ones(2)])
        """
        )
    )
    result = _run(pytester, *PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    # backbone.w[0] is 0.0, which weight decay leaves alone: 5 of its 6 elements moved; backbone.b is all zeros.
    result.stdout.fnmatch_lines(
        [
            "*_ test_leak _*",
            "paramgate_guard: 1 frozen parameter(s) changed:",
            "  backbone.w (frozen): 5 of 6 elements differ",
            "",
            "paramgate's findings:",
            "  PG101 frozen parameter backbone.w changed (24 bytes compared, digests differ): it is in optimizer "
            "group 0, which moved it*",
        ],
        consecutive=True,
    )
    assert "Traceback" not in result.stdout.str()
    assert "backbone.b (frozen)" not in result.stdout.str()


def test_step_checks_inside_the_block_and_count_elements_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_train=_numpy(
            """

        def test_step(paramgate_guard):
            model = build()
            with paramgate_guard(model, every=1) as gate:
                model[1].data[2] = -0.0  # 0.0 -> -0.0: the same value, other bits
                gate.step()
                pytest.fail("not reached: step() checks every step")


        def test_uncounted(paramgate_guard):
            model = build()
            with paramgate_guard(model, count_elements=False):
                model[0].data += 1
        """
        )
    )
    result = _run(pytester, *PLUGIN)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_step _*",
            "paramgate_guard: 1 frozen parameter(s) changed:",
            "  backbone.b (frozen): 1 of 3 elements differ",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_uncounted _*",
            "paramgate_guard: 1 frozen parameter(s) changed:",
            "  backbone.w (frozen): changed (element count not taken: count_elements=False)",
        ],
        consecutive=True,
    )
    result.stdout.no_fnmatch_line("*not reached*")


def test_an_exception_in_the_block_goes_on_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_train=_numpy(
            """

        def test_raises(paramgate_guard):
            model = build()
            with pytest.raises(KeyError, match="boom"), paramgate_guard(model):
                model[0].data += 1
                raise KeyError("boom")
        """
        )
    )
    _run(pytester, *PLUGIN).assert_outcomes(passed=1)


def test_torch_leak_lists_the_parameter_with_its_count(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    pytester.makepyfile(
        test_torch_train="""
        import torch


        def test_leak(paramgate_guard):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
            model[0].requires_grad_(False)
            with torch.no_grad():
                model[0].bias.zero_()
                model[0].bias[1] = 1.0
            opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)
            with paramgate_guard(model, opt):
                for p in model.parameters():
                    p.grad = torch.zeros_like(p)
                opt.step()
        """
    )
    result = _run(pytester, *PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "paramgate_guard: 2 frozen parameter(s) changed:",
            "  0.weight (frozen): 12 of 12 elements differ",
            "  0.bias (frozen): 1 of 4 elements differ",
        ],
        consecutive=True,
    )


def test_the_marker_audits_a_good_and_a_bad_factory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        factories=_numpy(
            """

        def good():
            model = build()
            return model, Momentum([model[2]], 0.1, 0.9)


        def bad():
            model = build()
            return model, Momentum(model, 0.1, 0.9, weight_decay=0.01)


        def model_only():
            return build()
        """
        ),
        test_audits="""
        import pytest


        @pytest.mark.paramgate_audit("factories:good")
        def test_good():
            pass


        @pytest.mark.paramgate_audit("factories:model_only")
        def test_model_only():
            pass


        @pytest.mark.paramgate_audit("factories:bad")
        def test_bad():
            raise AssertionError("not reached: the audit fails first")


        @pytest.mark.paramgate_audit("factories:missing")
        def test_missing():
            pass
        """,
    )
    result = _run(pytester, *PLUGIN)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_bad _*",
            "paramgate_audit('factories:bad'): the audit before training found 2 error(s):",
            "  PG001 backbone.w: frozen parameter backbone.w is in optimizer group 0, which moves it: "
            "weight_decay=0.01 in group 0 *",
            "  PG001 backbone.b: frozen parameter backbone.b is in optimizer group 0, which moves it: *",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_missing _*",
            "paramgate_audit('factories:missing'): target 'factories:missing': module factories has no attribute "
            "'missing'",
        ],
        consecutive=True,
    )
    result.stdout.no_fnmatch_line("*not reached*")
    assert "Traceback" not in result.stdout.str()


def test_the_plugin_is_inert_in_a_run_that_does_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys


        def test_plain(request):
            assert not request.config.pluginmanager.has_plugin("paramgate-audit-marker")
            for name in ("numpy", "torch", "mindspore", "jax"):
                assert name not in sys.modules, name


        def test_other():
            print("hello")
        """
    )
    with_plugin = _run(pytester, *PLUGIN, "-s", "-q")
    without = _run(pytester, "-p", "no:paramgate", "-s", "-q")
    with_plugin.assert_outcomes(passed=2)
    without.assert_outcomes(passed=2)

    def lines(result: pytest.RunResult) -> list[str]:
        return [line for line in result.outlines if " in " not in line]  # drop the timing line

    assert lines(with_plugin) == lines(without)
    markers = _run(pytester, *PLUGIN, "--markers").stdout.str()
    assert "@pytest.mark.paramgate_audit(target)" in markers
    assert "paramgate_audit" not in _run(pytester, "-p", "no:paramgate", "--markers").stdout.str()


def test_importing_the_plugin_imports_no_framework_and_no_numpy() -> None:
    script = textwrap.dedent(
        """
        import sys
        import paramgate.pytest_plugin
        leaked = sorted({"numpy", "torch", "mindspore", "jax"} & set(sys.modules))
        assert not leaked, leaked
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (np.array([0.0, 1.0, 2.0]), np.array([-0.0, 1.0, 2.0]), 1),  # -0.0 == 0.0, but not the same bits
        (np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 0),
        (np.array([np.nan, 1.0]), np.frombuffer(np.array([0x7FF8000000000001, 0], "<i8").tobytes()), 2),
        (np.arange(4, dtype=np.int16), np.array([0, 1, 2, 3 + 256], np.int16), 1),  # one byte of one element
    ],
)
def test_elements_are_counted_by_their_bytes(before: np.ndarray, after: np.ndarray, expected: int) -> None:
    assert _count_differing(before.view(np.uint8), after.view(np.uint8), before.size) == expected
