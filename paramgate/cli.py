"""The ``paramgate`` command line.

Exit codes:

- 0: no finding is an error (``plugins`` and ``--version`` always);
- 1: at least one error finding;
- 2: bad usage or input (any :class:`~paramgate.ParamGateError`: a factory that
  cannot be imported or called, returns something that is not a model, ...):
  one line on stderr, ``paramgate: error: ...``, never a traceback;
- 3: an internal error, a bug in paramgate: a short message saying how to
  report it, then the traceback;
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from paramgate import __version__
from paramgate.api import audit
from paramgate.demo import run_demo
from paramgate.errors import FactoryError, ParamGateError
from paramgate.html import render_html
from paramgate.plugins import get_plugin_manager

__all__ = ["load_factory", "main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

REPORT_BUG = (
    "This is a bug in paramgate, not in your input: please report it on paramgate's issue tracker with the "
    "traceback below and the output of `paramgate --version` and `paramgate plugins`."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paramgate",
        description="Check what an optimizer will touch, and prove frozen weights stayed frozen.",
    )
    parser.add_argument("--version", action="version", version=f"paramgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="replay the seed's walkthrough with real training steps")
    demo.add_argument("--framework", default="numpy", help="backend to run it on (default: numpy)")
    demo.add_argument("--lang", choices=["en", "zh"], default="en", help="language of the output")
    demo.add_argument("--json", action="store_true", help="print the audit and invariance reports as JSON")
    demo.add_argument(
        "--buggy", action="store_true", help="hand every parameter to Momentum with weight decay, and watch the gate"
    )
    demo.add_argument("--steps", type=int, default=3, help="training steps to run (default: 3)")

    aud = sub.add_parser("audit", help="audit the (model, optimizer) a factory returns")
    aud.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypkg.train:build or path/to/train.py:build")
    aud.add_argument(
        "--format",
        choices=["text", "json", "markdown", "github"],
        default="text",
        help="text (default; coloured on a terminal unless NO_COLOR is set), json, markdown (CI job summaries, "
        "PR comments) or github (workflow annotations: ::error title=PG001 ...::...)",
    )
    aud.add_argument("--lang", choices=["en", "zh"], default="en", help="language of the text format")
    aud.add_argument(
        "--html",
        metavar="PATH",
        help="also write a self-contained HTML page (module tree coloured by role, findings beside it) to PATH",
    )

    sub.add_parser("plugins", help="list the registered adapters and their versions")
    return parser


def _import(module_name: str) -> ModuleType:
    """Import a dotted module (from the cwd, like ``python -m``) or a ``.py`` file."""
    if not module_name.endswith(".py"):
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)
    path = Path(module_name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    spec.loader.exec_module(module)
    return module


def load_factory(target: str) -> object:
    """Import ``MODULE:FACTORY`` (or ``path/to/file.py:FACTORY``) and call the factory."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise FactoryError(f"target {target!r}: expected MODULE:FACTORY, e.g. mypkg.train:build_model")
    if module_name.endswith(".py") and not Path(module_name).is_file():
        raise FactoryError(f"target {target!r}: file {module_name} does not exist")
    try:
        module = _import(module_name)
    except SystemExit as exc:
        # A training script that parses its arguments (or exits) at import time.
        raise FactoryError(
            f"target {target!r}: importing {module_name} called sys.exit({exc.code!r}); move the script's "
            'top-level code under `if __name__ == "__main__":` so that importing it only defines the factory'
        ) from exc
    except ModuleNotFoundError as exc:
        raise FactoryError(
            f"target {target!r}: no module named {exc.name!r}; run from the directory that holds it, or install it"
        ) from exc
    except Exception as exc:
        raise FactoryError(f"target {target!r}: importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise FactoryError(f"target {target!r}: module {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise FactoryError(f"target {target!r}: {attr} is a {type(factory).__name__}, not a callable factory")
    try:
        return factory()
    except SystemExit as exc:
        raise FactoryError(
            f"target {target!r}: calling {attr}() called sys.exit({exc.code!r}); a factory must return the "
            "model, or (model, optimizer)"
        ) from exc
    except Exception as exc:
        raise FactoryError(f"target {target!r}: calling {attr}() raised {type(exc).__name__}: {exc}") from exc


def _cmd_audit(args: argparse.Namespace) -> int:
    built = load_factory(args.target)
    if isinstance(built, tuple) and len(built) == 2:
        model, optimizer = built
    else:
        model, optimizer = built, None
    try:
        report = audit(model, optimizer)
    except ParamGateError as exc:
        # Name the factory: the model or optimizer the message talks about is what it returned.
        hint = ""
        if isinstance(built, tuple) and len(built) != 2:
            hint = f" (it returned a {len(built)}-tuple; a factory returns the model, or a 2-tuple (model, optimizer))"
        attr = args.target.rpartition(":")[2]
        raise FactoryError(
            f"target {args.target!r}: {attr}() returned something paramgate cannot audit{hint}: {exc}"
        ) from exc
    if args.html is not None:
        _write_html(args.html, render_html(report))
    if args.format == "json":
        print(report.to_json())
    elif args.format == "markdown":
        print(report.render_markdown(), end="")
    elif args.format == "github":
        print(report.render_github(*_factory_location(args.target)), end="")
    else:
        print(report.render(args.lang, color=_use_color(sys.stdout)))
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _write_html(path: str, page: str) -> None:
    try:
        Path(path).write_text(page, encoding="utf-8")
    except (OSError, ValueError) as exc:  # a missing folder, no permission, a NUL in the path, ...
        raise ParamGateError(f"--html {path}: cannot write the page: {exc}") from exc


def _use_color(stream: object) -> bool:
    """Colour only on a terminal, never when NO_COLOR is set (https://no-color.org); FORCE_COLOR forces it."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def _factory_location(target: str) -> tuple[str | None, int | None]:
    """For ``path/to/train.py:build``: the file and the line of ``def build``, to anchor GitHub annotations."""
    module_name, _, attr = target.rpartition(":")
    if not module_name.endswith(".py"):
        return None, None
    path = Path(module_name)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return path.as_posix(), None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == attr:
            return path.as_posix(), node.lineno
    return path.as_posix(), None


def _cmd_demo(args: argparse.Namespace) -> int:
    pm = get_plugin_manager()
    kit = pm.hook.paramgate_demo_kit(framework=args.framework)
    if kit is None:
        available = ", ".join(a.name for _, a in pm.adapters())
        raise FactoryError(
            f"--framework {args.framework}: no installed adapter provides a demo for it "
            f"(installed adapters: {available}); install an adapter plugin for {args.framework}, "
            "then check `paramgate plugins`"
        )
    if args.steps < 1:
        raise FactoryError("--steps: must be at least 1")
    return run_demo(kit, sys.stdout, plugins=pm, lang=args.lang, buggy=args.buggy, as_json=args.json, steps=args.steps)


def _cmd_plugins() -> int:
    infos = get_plugin_manager().plugin_infos()
    if not infos:
        print("no paramgate plugins are installed")
        return EXIT_OK
    rows = [("plugin", "framework", "package", "module", "framework version")]
    for i in infos:
        if i.error:
            rows.append((i.name, "-", "-", f"FAILED: {i.error}", "-"))
        else:
            package = f"{i.package} {i.version}" if i.package else "(not from a distribution)"
            rows.append((i.name, i.framework or "-", package, i.module, i.framework_version or "not installed"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


def _one_line(text: str) -> str:
    # A user error is one line on stderr, whatever the message (an exception quoted from a factory may span several).
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "audit":
            return _cmd_audit(args)
        if args.command == "plugins":
            return _cmd_plugins()
    except ParamGateError as exc:
        print(f"paramgate: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("paramgate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # anything else is paramgate's own fault: say so, and how to report it
        print(f"paramgate: internal error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        print(REPORT_BUG, file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return EXIT_INTERNAL
    parser.print_help()
    return EXIT_USAGE
