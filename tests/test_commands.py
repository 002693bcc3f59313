"""Every command is discoverable: `nlparena --help` (and `nlparena` alone) lists each one with a line that reads whole,
a command that does not exist is one line naming the commands there are, and each command's own `--help` starts
with a description that is whole sentences (not a docstring's first line cut where it wrapped)."""

from __future__ import annotations

import re

import pytest
from lightning.pytorch.cli import LightningCLI

from nlparena.__main__ import SUBCOMMANDS
from nlparena.cli.commands import COMMANDS as DESCRIBED
from nlparena.cli.commands import LIGHTNING_COMMANDS, OTHER_COMMANDS
from tests.conftest import run_cli

# LightningCLI's four and ours; a command added later is listed by `nlparena --help` or this file fails
COMMANDS = ["fit", "validate", "test", "predict", "translate", "compare", "schedule", "export"]


def listing(text: str) -> dict[str, str]:
    """The commands a help text lists: {command: its line}, from lines `  COMMAND  description`."""
    found = {}
    for line in text.splitlines():
        entry = re.match(r"^ {2}(\w+) {2,}(\S.*)$", line)
        if entry and entry.group(1) in COMMANDS:
            found[entry.group(1)] = entry.group(2)
    return found


def output_of(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `nlparena ARGS`, which ends by SystemExit."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_help_lists_every_command_with_a_line_that_reads_whole(capsys):
    status, out, _ = output_of(capsys, "--help")
    assert status == 0
    listed = listing(out)
    assert sorted(listed) == sorted(COMMANDS), out
    for command, line in listed.items():
        assert line.endswith("."), f"{command}: {line!r}"
    assert "Lightning Trainer command line tool" not in out


def test_nlparena_alone_lists_every_command(capsys):
    status, out, err = output_of(capsys)
    assert status == 2
    assert sorted(listing(out + err)) == sorted(COMMANDS), out + err


def test_a_command_that_does_not_exist_is_one_line_naming_it_and_every_command(capsys):
    status, out, err = output_of(capsys, "foo", "--trainer.max_epochs=1")
    assert status == 2 and not out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlparena: error: ") and "'foo'" in lines[0], err
    for command in COMMANDS:
        assert re.search(rf"\b{command}\b", lines[0]), lines[0]


def description(help_text: str) -> str:
    """The paragraph after the usage lines of a `--help`, on one line."""
    paragraphs = help_text.split("\n\n")
    assert paragraphs[0].startswith("usage:"), help_text[:200]
    return " ".join(paragraphs[1].split())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_starts_with_a_description_in_whole_sentences(capsys, command):
    status, out, _ = output_of(capsys, command, "--help")
    assert status == 0
    text = description(out)
    assert text[:1].isupper() and text.endswith("."), f"nlparena {command} --help: {text!r}"
    assert not text.startswith(("options:", "positional arguments:")), text


def test_every_command_has_its_line():
    """The dispatcher's commands and LightningCLI's are those cli/commands.py describes, and those this file checks."""
    assert set(LIGHTNING_COMMANDS) == set(LightningCLI.subcommands())
    assert set(OTHER_COMMANDS) == set(SUBCOMMANDS)
    assert sorted(DESCRIBED) == sorted(COMMANDS)
