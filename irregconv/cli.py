"""The ``irregconv`` command: ``demo``, ``detect``, ``cora``, ``fetch`` and ``bench {engine,sparse,graph}``.

Each subcommand lives in its own module (``irregconv/apps/``, ``irregconv/bench/``) exposing
``add_parser(subparsers)`` that registers it with ``set_defaults(run=...)``; modules are imported only
when their subcommand runs, so ``irregconv --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

#: subcommand -> module with ``add_parser(subparsers)``
COMMANDS = {
    "demo": "irregconv.apps.demo",
    "detect": "irregconv.apps.detect",
    "cora": "irregconv.apps.cora",
    "fetch": "irregconv.data.fetch",
}
BENCHMARKS = {
    "engine": "irregconv.bench.engine",
    "sparse": "irregconv.bench.sparse",
    "graph": "irregconv.bench.graph",
}


def _register(subparsers, name: str, module: str) -> None:
    """Register ``name``; a module that fails to import gets a stub that reports why when run."""
    try:
        importlib.import_module(module).add_parser(subparsers)
    except ImportError as exc:
        def unavailable(args, _exc=exc):
            raise SystemExit(f"irregconv {name}: unavailable here ({_exc})")
        subparsers.add_parser(name, help=f"(unavailable: {exc})").set_defaults(run=unavailable)


def build_parser(argv: List[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irregconv", description="Non-grid convolutions: demo, tools, benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv else None
    for name, module in COMMANDS.items():
        if wanted in (None, name, "-h", "--help"):
            _register(sub, name, module)
        else:
            sub.add_parser(name)
    bench = sub.add_parser("bench", help="benchmarks against the incumbents in the same process")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    for name, module in BENCHMARKS.items():
        if wanted in (None, "bench", "-h", "--help"):
            _register(bench_sub, name, module)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    from .allocator import reuse_freed_memory
    reuse_freed_memory()  # see irregconv/allocator.py: no page faults on re-allocated scratch memory
    result = args.run(args)
    return 0 if result is None else int(result)


if __name__ == "__main__":
    sys.exit(main())
