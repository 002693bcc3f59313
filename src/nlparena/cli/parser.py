"""The parser of `nlparena fit|validate|test|predict`: jsonargparse's errors as one line naming the key or file.

Where a key or file can be named from what the parser itself knows, it is named before jsonargparse parses: a config
file that is not a file, a `--model` or `--data` that names no class we know. A key the parser does not have, or a
value outside a key's words, is named as the user wrote it with the closest key or word (`cli/keys.py`, from what
the parser was given and its own actions). Any other error of jsonargparse is its own message cleaned to one line
(it names the key itself: `Parser key "trainer.max_epochs": ...`); its text is never searched for keys.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml
from jsonargparse import ActionConfigFile, Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser

from nlparena.cli.commands import DESCRIPTION, LIGHTNING_COMMANDS, OTHER_COMMANDS
from nlparena.cli.keys import Given, NamedKeyError, first_bad_key, given_in_mapping, given_on_command_line
from nlparena.errors import ConfigError, config_error_in, one_line, read_yaml
from nlparena.models import ArenaModel

# lines of jsonargparse's messages that list the types it tried: left out of the one line (only its look changes if
# jsonargparse words them otherwise)
TYPE_LISTINGS = ("Given value type", "Subtypes:", "Errors:", "Does not validate", "Expected a <class 'NoneType'>")


def asks_for_help(args: list[str]) -> bool:
    """`-h`, `--help`, `--model.help Transformer`, `--print_config=comments`: output that shows the docs of keys."""
    return any(a in ("-h", "--help") or a.split("=")[0].endswith(".help") or "comments" in a for a in args)


def subclasses(base: type) -> dict[str, type]:
    """The public subclasses of `base`, by import path (`nlparena.models.translation.Transformer`, and as exported)."""
    found, todo = {}, [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_"):
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
                package = sub.__module__.rsplit(".", 1)[0]
                found[f"{package}.{sub.__qualname__}"] = sub
    return found


def choices(base: type, family: str | None = None) -> list[str]:
    """Names of our subclasses of `base` that `--model` / `--data` accept (for one task family if given)."""
    return sorted(
        sub.__name__
        for sub in set(subclasses(base).values())
        if sub.__module__.startswith("nlparena.")
        and not sub.__name__.endswith(("Model", "DataModule"))
        and (family is None or getattr(sub, "family", None) == family)
    )


def cleaned(message: str) -> str:
    """jsonargparse's message on one line, without the lines that list the types it tried."""
    lines = [line.strip(" -") for line in message.splitlines()]
    return one_line(" ".join(line for line in lines if line and not line.startswith(TYPE_LISTINGS)), 400)


class ConfigFile(ActionConfigFile):
    """`-c FILE`: a value that is meant as a file (not a config given inline, `-c '{trainer: ...}'`) but is not one
    is refused in one line naming it, before jsonargparse tries it."""

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        if isinstance(values, str) and not os.path.isfile(values):
            try:
                inline = not isinstance(yaml.safe_load(values), str)  # jsonargparse parses a mapping as a config
            except yaml.YAMLError:
                inline = False
            if not inline or os.path.isdir(values):
                read_yaml(values, "--config")  # raises the ConfigError: a folder, or no such file
        super().__call__(parser, cfg, values, option_string)


class NlpArenaParser(LightningArgumentParser):
    """Turns jsonargparse's multi-line errors into one line naming the key and what is allowed."""

    bases: ClassVar[dict[str, type]] = {"model": ArenaModel, "data": LightningDataModule}
    subcommands_action: argparse.Action | None = None
    given: Given = Given()  # the keys of the parse under way, to name one the parser does not have
    arguments_of: type | None = None  # the class whose arguments are this parser's (a model, data, optimizer, ...)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--trainer.max_epoch 2` is an error, not `max_epochs`
        super().__init__(*args, **kwargs)

    def add_subcommands(self, *args: Any, **kwargs: Any) -> Any:
        """jsonargparse's, keeping the subcommands' action: its `choices` are the subcommands' parsers."""
        self.subcommands_action = super().add_subcommands(*args, **kwargs)
        return self.subcommands_action

    def describe_commands(self) -> None:
        """Our description of the tool and of each subcommand (cli/commands.py) in `--help`, instead of LightningCLI's
        (the first wrapped line of a Trainer docstring); the commands that are not LightningCLI's below the list."""
        self.description = DESCRIPTION
        self.epilog = f"Other commands: {', '.join(OTHER_COMMANDS)} (`nlparena --help` says what each does)."
        if self.subcommands_action is None:
            return
        for choice in self.subcommands_action._choices_actions:  # argparse's line of each subcommand in the list
            choice.help = LIGHTNING_COMMANDS.get(choice.dest, choice.help)
        for name, subparser in self.subcommands_action.choices.items():
            subparser.description = LIGHTNING_COMMANDS.get(name, subparser.description)

    def subcommand_parser(self, subcommand: str | None) -> LightningArgumentParser:
        """The parser of `subcommand`; this parser when there is none (`run=False`)."""
        if subcommand is None or self.subcommands_action is None:
            return self
        return self.subcommands_action.choices[subcommand]

    def link_arguments(self, source: Any, target: str, *args: Any, **kwargs: Any) -> None:
        """jsonargparse's; a size the data decides (`model.init_args.vocab_size`) is left out of `--model.help`, which
        lists what a user sets (the CLI passes it; typed, it is refused: `check_data_decided`)."""
        super().link_arguments(source, target, *args, **kwargs)
        key, _, name = target.partition(".init_args.")
        help_action = next((action for action in self._actions if action.dest == f"{key}.help"), None)
        if name and help_action is not None:
            help_action.sub_add_kwargs.setdefault("skip", set()).add(name)

    def add_class_arguments(self, theclass: Any, nested_key: str | None = None, *args: Any, **kwargs: Any) -> Any:
        """jsonargparse's, remembering the class when its arguments are this parser's own (a model's parser)."""
        if nested_key is None:
            self.arguments_of = theclass
        return super().add_class_arguments(theclass, nested_key, *args, **kwargs)

    def parse_args(self, args: Any = None, *rest: Any, **kwargs: Any) -> Namespace:
        self.given = given_on_command_line(sys.argv[1:] if args is None else args)
        return super().parse_args(args, *rest, **kwargs)

    def parse_object(self, obj: Any, *rest: Any, **kwargs: Any) -> Namespace:
        self.given = given_in_mapping(obj)
        return super().parse_object(obj, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """A ConfigError: one found inside jsonargparse's error (a key an inner parser does not have is named as this
        parser was given it), else a key this parser does not have or a value outside a key's words, else
        jsonargparse's message on one line."""
        cause = config_error_in(ex)
        if isinstance(cause, NamedKeyError):
            cause = cause.under(self.given)
        elif cause is None and self.subcommands_action is None:
            cause = first_bad_key(self, self.given, self.arguments_of, self.siblings())
        raise (cause or ConfigError(cleaned(message))) from None

    def siblings(self) -> dict[str, type]:
        """The classes that could stand in for this parser's model or data class (of its task family), by name."""
        for base in self.bases.values():
            if isinstance(self.arguments_of, type) and issubclass(self.arguments_of, base):
                by_name = {sub.__name__: sub for sub in subclasses(base).values()}
                family = getattr(self.arguments_of, "family", None)
                return {name: by_name[name] for name in choices(base, family) if by_name[name] is not self.arguments_of}
        return {}

    def sections_read(self, content: dict[str, Any]) -> dict[str, Any]:
        """The part of a config file this parser reads: all of it (`nlparena export` reads its `data:` alone)."""
        return content

    def parse_path(self, path: Any, *args: Any, **kwargs: Any) -> Namespace:
        """A config file (`-c FILE`), refused in one line naming it when it is missing, not valid YAML, repeats a
        key, is not a mapping of keys (empty, a list, a scalar) or names a model or data class we do not know."""
        content = read_yaml(path, "--config")
        if not isinstance(content, dict):
            found = "it is empty" if content is None else f"it holds a {type(content).__name__}: {content!r}"
            raise ConfigError(f"--config {path}: must be a mapping of keys (trainer:, model:, data:, ...); {found}")
        given, self.given = self.given, given_in_mapping(self.sections_read(content))
        try:
            for key in self.bases:
                value = content.get(key)
                check_class_name(key, value.get("class_path") if isinstance(value, dict) else value, f"{key}:")
            return super().parse_path(path, *args, **kwargs)
        except ConfigError as err:
            raise ConfigError(f"--config {path}: {err}") from None
        finally:
            self.given = given

    @classmethod
    def classes_on_command_line(cls, args: list[str]) -> dict[str, str | None]:
        """The values of `--model` and `--data` on a command line (read by argparse), None where one is not given."""
        reader = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
        for key in cls.bases:
            reader.add_argument(f"--{key}")
        try:
            given, _ = reader.parse_known_args([arg for arg in args if arg != "--"])
        except argparse.ArgumentError:
            return dict.fromkeys(cls.bases)  # `--model` without a value: jsonargparse says so
        return {key: getattr(given, key) for key in cls.bases}

    @classmethod
    def check_command_line(cls, args: list[str]) -> None:
        """`--model NAME` and `--data NAME` on a command line must name a class we know."""
        for key, value in cls.classes_on_command_line(args).items():
            check_class_name(key, value, f"--{key}")


def check_class_name(key: str, value: Any, where: str) -> None:
    """A class given by name (`Transformer`, not an import path) for `model` or `data` must be one we know; a value
    that is neither a name nor an import path must not be a file (`check_not_a_file`)."""
    if not isinstance(value, str) or value in ("null", "None"):
        return
    base = NlpArenaParser.bases[key]
    if not value.isidentifier():
        import_path = all(part.isidentifier() for part in value.split("."))  # `nlparena.models.Transformer`
        if not import_path or os.path.exists(value):  # `model.yaml` could be both: a file is a file
            check_not_a_file(key, value, where)
        return
    if value not in {sub.__name__ for sub in subclasses(base).values()}:
        raise ConfigError(f"{where} {value}: unknown {key}; choose one of {', '.join(choices(base))}")


CLASS_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")  # a file of `class_path:` and `init_args:`, read by jsonargparse
WHAT = {"model": "a model class", "data": "a data module class"}


def check_not_a_file(key: str, value: str, where: str) -> None:
    """`--data my/pairs.tsv`: a value of `model` or `data` that is neither a class name nor an import path is refused
    in one line naming it (jsonargparse would read the file as the class's config and echo its content), unless it is
    a class's own config (a mapping with `class_path`, in a YAML or JSON file or inline)."""
    path = Path(value)
    if path.is_file() and path.suffix.lower() in CLASS_CONFIG_SUFFIXES:
        content = read_yaml(path, f"{where} {value}")
        if isinstance(content, dict) and "class_path" in content:
            return
    elif not path.exists():
        try:
            if isinstance(yaml.safe_load(value), dict):  # a class's config given inline: `{class_path: ...}`
                return
        except yaml.YAMLError:
            pass
    names = ", ".join(choices(NlpArenaParser.bases[key]))
    if not path.exists():
        raise ConfigError(f"{where} {value}: no such file, and not the name of {WHAT[key]}; choose one of {names}")
    kind = "a file" if path.is_file() else "a folder"
    if key == "data":
        raise ConfigError(
            f"{where} {value}: {kind}, where the name of {WHAT[key]} is expected; to train on it, give --data TextPair "
            f"--data.train_file {value} (TextClassification or TextCorpus for labelled or plain text)"
        )
    raise ConfigError(
        f"{where} {value}: {kind}, where the name of {WHAT[key]} is expected; choose one of {names} (a config file "
        f"is given with -c {value})"
    )
