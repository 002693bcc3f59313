"""What each `nlparena` command does, in one sentence: the lines of `nlparena --help`, and the description at the top
of each LightningCLI command's own `--help` (which would otherwise be the first wrapped line of a Trainer
docstring, cut mid-sentence)."""

from __future__ import annotations

import sys
from typing import NoReturn

from nlparena.errors import ConfigError

# LightningCLI's commands, run by NlpArenaCLI
LIGHTNING_COMMANDS = {
    "fit": "Train a model, validating every epoch; writes a run folder with its checkpoints.",
    "validate": "Evaluate a checkpoint (--ckpt_path) on the validation split.",
    "test": "Evaluate a checkpoint (--ckpt_path) on the test split; writes each example's output.",
    "predict": "Run a checkpoint (--ckpt_path) on the test split and return its predictions.",
}
# ours, dispatched by `nlparena.__main__` before LightningCLI is reached
OTHER_COMMANDS = {
    "translate": "Translate sentences or a text file with a trained translation checkpoint.",
    "compare": "Train and test several configs over several seeds; writes a report comparing them.",
    "schedule": "Draw the learning-rate curve a config would produce, without training.",
    "export": "Write a data module's train, val and test splits as text files.",
}
COMMANDS = {**LIGHTNING_COMMANDS, **OTHER_COMMANDS}
DESCRIPTION = "Train, evaluate and compare NLP architectures (PyTorch Lightning)."


def listing() -> str:
    """The text of `nlparena --help`: usage, and every command with its line."""
    width = max(map(len, COMMANDS)) + 2
    lines = [f"  {name:<{width}}{text}" for name, text in COMMANDS.items()]
    return "\n".join(
        [
            f"usage: nlparena {{{','.join(COMMANDS)}}} ...",
            "",
            DESCRIPTION,
            "",
            "commands:",
            *lines,
            "",
            "`nlparena COMMAND --help` shows the options of COMMAND.",
        ]
    )


def dispatch_help(args: list[str]) -> None:
    """`nlparena --help` prints the commands (exit status 0); `nlparena` alone prints them on stderr (exit status 2);
    a first argument that is neither a command nor an option is one line naming it and the commands (a ConfigError).
    Anything else returns: the command runs."""
    if not args:
        print(listing(), file=sys.stderr)
        raise SystemExit(2)
    first = args[0]
    if first in ("-h", "--help"):
        print(listing())
        raise SystemExit(0)
    if first not in COMMANDS and not first.startswith("-"):
        unknown_command(first)


def unknown_command(name: str) -> NoReturn:
    """One line naming `name` and the commands there are."""
    commands = ", ".join(COMMANDS)
    raise ConfigError(f"no command {name!r}; the commands are {commands} (`nlparena --help` says what each does)")
