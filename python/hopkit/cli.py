"""The ``hopkit`` command line."""

from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    from . import show_config

    show_config()
    return 0


def _cmd_bench(args) -> int:
    from . import bench

    return bench.main([args.what] + (["--quick"] if args.quick else [])
                      + (["--json", args.json] if args.json else []))


def _cmd_demo(args) -> int:
    from . import bench, show_config

    show_config()
    print()
    return bench.main(["spmm", "--quick"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hopkit",
        description="hopkit: fast GNN kernels for recommender systems.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="print version, backends, threads and build options")
    s.set_defaults(fn=_cmd_info)
    s = sub.add_parser("demo", help="run the built-in end-to-end demo")
    s.set_defaults(fn=_cmd_demo)
    s = sub.add_parser("bench", help="the comparison runner: hopkit vs its peers, one process")
    s.add_argument("what", nargs="?", default="spmm", choices=["spmm", "all"],
                   help="which benchmark group to run (default: spmm)")
    s.add_argument("--quick", action="store_true", help="fewer feature sizes and repeats")
    s.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    s.set_defaults(fn=_cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
