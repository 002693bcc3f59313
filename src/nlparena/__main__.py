"""The `nlparena` entry point: dispatches a subcommand to `cli/` or `compare/`. Nothing imports this module."""

from __future__ import annotations

import sys

from nlparena import cpu_load  # noqa: F401  (first: the CPU load is measured from here, for `--threads auto`)
from nlparena.cli.commands import dispatch_help
from nlparena.cli.export import export
from nlparena.cli.lightning import NlpArenaCLI
from nlparena.cli.schedule import schedule
from nlparena.cli.translate import translate
from nlparena.compare.runner import compare
from nlparena.errors import one_line_errors

# the rest are LightningCLI's; each command's line of `nlparena --help` is in cli/commands.py
SUBCOMMANDS = {"translate": translate, "schedule": schedule, "export": export, "compare": compare}


def main(args: list[str] | None = None) -> None:
    """`nlparena translate | schedule | export | compare ...`, or LightningCLI's `fit | validate | test | predict`."""
    args = sys.argv[1:] if args is None else args
    with one_line_errors():
        dispatch_help(args)
        if args[:1] and args[0] in SUBCOMMANDS:
            SUBCOMMANDS[args[0]](args[1:])
        else:
            NlpArenaCLI(args=args)


if __name__ == "__main__":
    main()
