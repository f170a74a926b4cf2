"""`make bench [ARGS="name ..."]`: runs the benchmarks (all, or those named) and prints their figures.

Every benchmark times the pack against a baseline run in the same command, and reports the ratio.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import time

from tools import benchmarks


def discover() -> dict:
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        module = importlib.import_module(f"tools.benchmarks.{info.name}")
        if hasattr(module, "run"):
            found[module.NAME] = module
    return found


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("bench")
    available = discover()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run in tests")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(available)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(available)}")
    for name in args.names or list(available):
        module = available[name]
        log.info("== %s: %s", name, module.DESCRIPTION)
        start = time.perf_counter()
        for line in module.run(args):
            log.info("   %s", line)
        log.info("   (%.1f s)", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
