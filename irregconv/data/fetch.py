"""``python -m irregconv.data.fetch NAME ... [--root DIR] [--from PATH ...] [--link]`` (also ``irregconv fetch``):
put downloaded data files where irregconv reads them and check their SHA-256.

No network: the files come from what you downloaded (``--from`` files or folders, searched by the names the
files have in the original downloads). Without ``--from`` it checks what is under the data root and says what
is missing and where to get it. ``--list`` shows the data sets. Exit status: 0 when every file is in place and
checked, 1 when some are missing, 2 on a checksum mismatch or a bad argument.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .datasets import DATASETS, ChecksumError, data_root, lay_out


def _list() -> int:
    for dataset in DATASETS.values():
        print(f"{dataset.name:14s} {dataset.description}\n{'':14s} {len(dataset.files)} files; get them from "
              f"{dataset.get_it}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Entry point of ``irregconv fetch`` / ``python -m irregconv.data.fetch``."""
    if args.list:
        return _list()
    if not args.names:
        raise SystemExit(f"fetch: name at least one data set ({', '.join(DATASETS)}, or all), or pass --list")
    names = list(DATASETS) if "all" in args.names else args.names
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"fetch: unknown data set(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)} or all")
    root = data_root() if args.root is None else args.root
    missing = 0
    for name in names:
        try:
            statuses = lay_out(name, root, args.sources, link=args.link)
        except (ChecksumError, FileNotFoundError) as err:
            print(f"fetch {name}: {err}", file=sys.stderr)
            return 2
        for status in statuses:
            where = f"  <- {status.source}" if status.state in ("copied", "linked") else ""
            print(f"{status.state:9s} {root}/{status.entry.path}{where}")
            if status.state == "missing":
                missing += 1
                if status.entry.url:
                    print(f"{'':9s} download: {status.entry.url}")
        if any(s.state == "missing" for s in statuses):
            print(f"fetch {name}: get the missing files from {DATASETS[name].get_it}, then run again with --from "
                  f"DOWNLOADS", file=sys.stderr)
    return 1 if missing else 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``fetch`` on an argparse subparsers object; ``set_defaults(run=run_fetch)``."""
    parser = subparsers.add_parser("fetch", help="lay out and checksum downloaded data sets",
                                   description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"data sets: {', '.join(DATASETS)}, or all")
    parser.add_argument("--root", default=None,
                        help="data root to fill (default: $IRREGCONV_DATA if set, else ./datasets)")
    parser.add_argument("--from", dest="sources", nargs="+", default=[], metavar="PATH",
                        help="downloaded files or folders to take the files from (searched recursively)")
    parser.add_argument("--link", action="store_true", help="symlink the checked files instead of copying them")
    parser.add_argument("--list", action="store_true", help="list the data sets and where to get them")
    parser.set_defaults(run=run_fetch)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m irregconv.data.fetch", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
