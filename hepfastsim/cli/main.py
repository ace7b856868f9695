"""The ``hepfastsim`` console script.

Each subcommand lives in its own module under :mod:`hepfastsim.cli` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` (a callable
taking the parsed namespace and returning an exit code). Threads, logging and progress
bars are decided here, never in the library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hepfastsim.errors import HepfastsimError

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "hepfastsim.cli.convert",
    "hepfastsim.cli.generate",
    "hepfastsim.cli.dijet",
    "hepfastsim.cli.fit",
    "hepfastsim.cli.dijet_gan",
    "hepfastsim.cli.train",
    "hepfastsim.cli.validate",
    "hepfastsim.cli.generate_images",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepfastsim",
        description="Fast simulation of reconstruction-level jets from generator-level jets in NanoAOD-like ROOT files.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # subcommand not built yet
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HepfastsimError as err:
        print(f"hepfastsim {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hepfastsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
