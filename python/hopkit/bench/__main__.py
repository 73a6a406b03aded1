"""python -m hopkit.bench [spmm|propagate|topk|bpr|compile|all] [--quick] [--json F] [--plot F.png]

python -m hopkit.bench serve [...]: the load test of ``hopkit serve`` (see
hopkit/bench/serve.py; its own options, ``serve --help``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import _common

GROUPS = ("spmm", "propagate", "topk", "bpr", "compile")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        from . import serve

        return serve.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m hopkit.bench",
                                description="hopkit vs its peers, timed in one process")
    p.add_argument("group", nargs="?", default="spmm", choices=GROUPS + ("all",))
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.add_argument("--json", metavar="FILE", help="write the result rows as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the ratios (matplotlib)")
    args = p.parse_args(argv)
    rows = []
    for g in GROUPS if args.group == "all" else (args.group,):
        try:
            mod = importlib.import_module(f"hopkit.bench.{g}")
        except ImportError as e:
            print(f"[{g}] not available: {e}")
            continue
        rows += mod.run(quick=args.quick)
    _common.report(rows)
    if args.json:
        _common.write_json(rows, args.json)
    if args.plot:
        _common.plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
