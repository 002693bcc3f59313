"""The keys a parser was given, checked against the keys it has: an unknown key or a value outside a fixed set of
words is one line naming the key as the user wrote it, with the closest key or word (`difflib`).

jsonargparse parses `--model.rnn.hiden_size=64` in a parser of the model class alone, which reports
"unrecognized arguments: --rnn.hiden_size=64": the `--model.` is lost and nothing is suggested. So each parser keeps
what it was given (command line keys, or the keys of a config or of a class's arguments) and, when it fails, finds
the key it does not have by comparing them with its own actions; the parsers around it put back the part of the key
they handed down (`UnknownKey.under`). Neither jsonargparse's message nor its traceback is read.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from jsonargparse import ArgumentParser, Namespace

from nlparena.errors import ConfigError, shorten

NOT_GIVEN = object()  # `--key` whose value is not on the command line (a flag, or the end of the arguments)
NOT_KEYS = ("help", "config", "print_config", "print_shtab")  # actions that are no setting, never suggested
FEW_KEYS = 15  # a parser with at most this many keys lists them when none is close to an unknown one


class Given(typing.NamedTuple):
    """What a parser was given: (dotted key, value) pairs, and whether they came from a command line (`--key`)."""

    items: tuple[tuple[str, Any], ...] = ()
    dashes: bool = True


def given_on_command_line(args: Iterable[str]) -> Given:
    """The keys of `--key=value`, `--key value` and `--key+=value` options (short options and values skipped)."""
    args = list(args)
    items = []
    for index, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        key, equals, value = arg[2:].partition("=")
        if not equals:
            following = args[index + 1] if index + 1 < len(args) else None
            value = following if following is not None and not following.startswith("--") else NOT_GIVEN
        items.append((key.rstrip("+"), value))
    return Given(tuple(items), dashes=True)


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    children = vars(value) if isinstance(value, Namespace) else value if isinstance(value, Mapping) else None
    if not children or not all(isinstance(name, str) for name in children):
        yield prefix, value
        return
    for name, child in children.items():
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def given_in_mapping(value: Any) -> Given:
    """The dotted keys of a config or of a class's arguments (a mapping or a Namespace), with their values."""
    return Given(tuple(item for item in _leaves(value, "") if item[0]), dashes=False)


class NamedKeyError(ConfigError):
    """A key (as the parser that failed saw it) that `under` names as an outer parser was given it."""

    def __init__(self, key: str, dashes: bool) -> None:
        self.key, self.dashes = key, dashes
        super().__init__(self.text())

    def text(self) -> str:
        raise NotImplementedError

    def renamed(self, key: str, prefix: str, dashes: bool) -> NamedKeyError:
        raise NotImplementedError

    def under(self, given: Given) -> NamedKeyError:
        """This error, its key as `given` holds it (`rnn.hiden_size` given as `--model.rnn.hiden_size`), if it does."""
        for key, _ in given.items:
            if key == self.key or key.endswith("." + self.key):
                return self.renamed(key, key[: len(key) - len(self.key)], given.dashes)
        return self


class UnknownKey(NamedKeyError):
    """A key the parser has not: `--model.rnn.hiden_size: no such key of Seq2SeqAttention; did you mean ...?`.
    The class is named when the key is inside a class the user chose (`--model NAME`: the part `under` put back)."""

    def __init__(
        self,
        key: str,
        close: str | None,
        owner: str | None,
        elsewhere: tuple[str, ...],
        dashes: bool,
        keys: tuple[str, ...] = (),
        prefix: str = "",
    ):
        self.close, self.owner, self.elsewhere, self.keys, self.prefix = close, owner, elsewhere, keys, prefix
        super().__init__(key, dashes)

    def text(self) -> str:
        dash = "--" if self.dashes else ""
        owner = self.owner if self.prefix else None
        line = f"{dash}{self.key}: no such key" + (f" of {owner}" if owner else "")
        if self.close == self.key and self.elsewhere:  # a key of other classes: given before its class, or not its
            group = self.key.split(".")[0]
            choose = f"give --{group}=NAME before it" if self.dashes else "give `class_path`, the key under `init_args`"
            return f"{line}; it is a key of {', '.join(self.elsewhere)} ({choose})"
        if self.close is not None:
            where = f" (a key of {', '.join(self.elsewhere)})" if self.elsewhere else ""
            return f"{line}; did you mean {dash}{self.close}{where}?"
        if owner:  # `--model.help Transformer` lists the keys of a class
            return f"{line}; `--{self.prefix.split('.')[0]}.help {owner}` lists its keys"
        if self.keys:
            return f"{line}; the keys are {', '.join(dash + self.prefix + key for key in self.keys)}"
        return f"{line}; `nlparena fit --help` lists the keys"

    def renamed(self, key: str, prefix: str, dashes: bool) -> UnknownKey:
        close = None if self.close is None else prefix + self.close
        return UnknownKey(key, close, self.owner, self.elsewhere, dashes, self.keys, prefix)


class BadChoice(NamedKeyError):
    """A value outside a key's words: `--model.attention.kind=bahdanu: not one of ...; did you mean bahdanau?`."""

    def __init__(self, key: str, value: str, words: list[str], dashes: bool):
        self.value, self.words = value, words
        super().__init__(key, dashes)

    def text(self) -> str:
        dash = "--" if self.dashes else ""
        line = f"{dash}{self.key}={shorten(self.value)}: not one of {', '.join(map(repr, self.words))}"
        close = difflib.get_close_matches(self.value, self.words, n=1, cutoff=0.5)
        return f"{line}; did you mean {close[0]!r}?" if close else line

    def renamed(self, key: str, prefix: str, dashes: bool) -> BadChoice:
        return BadChoice(key, self.value, self.words, dashes)


def words_of(action: Any) -> list[str] | None:
    """The words a key allows, if its type is a Literal of strings (optionally or None), or argparse's choices of
    strings; else None."""
    if getattr(action, "choices", None) and all(isinstance(word, str) for word in action.choices):
        return list(action.choices)
    hint = getattr(action, "_typehint", None)  # jsonargparse's ActionTypeHint keeps the key's type here
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    words: list[str] = []
    for member in members:
        if member is type(None):
            continue
        if typing.get_origin(member) is not Literal or not all(isinstance(word, str) for word in member.__args__):
            return None
        words += member.__args__
    return words or None


def _settings(parser: ArgumentParser) -> dict[str, Any]:
    """The parser's actions by key, but those of `--help`, `--config` and the like."""
    return {
        action.dest: action
        for action in parser._actions
        if action.dest not in NOT_KEYS and not action.dest.endswith(".help")
    }


def _takes_nested_keys(actions: dict[str, Any], dest: str) -> bool:
    """Whether the keys under `dest` are inside its value (`model`: a class and its `init_args`, a dict), not
    actions of their own (`rnn`, a group whose keys are `rnn.hidden_size`, ...)."""
    return not any(other.startswith(dest + ".") for other in actions)


def _leaf_keys(actions: dict[str, Any]) -> list[str]:
    """The keys that are settings, not groups of them."""
    return [dest for dest in actions if _takes_nested_keys(actions, dest)]


def knows(parser: ArgumentParser, key: str) -> bool:
    """Whether `key` is one of the parser's (`--config` and `--help` included), or inside the value of one."""
    if any(action.dest == key for action in parser._actions):
        return True
    actions = _settings(parser)
    return any(key.startswith(dest + ".") and _takes_nested_keys(actions, dest) for dest in actions)


def closest(key: str, keys: Iterable[str]) -> str | None:
    """The key closest to `key`, if one is close (difflib's ratio at least 0.6)."""
    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
    return close[0] if close else None


def first_bad_key(
    parser: ArgumentParser, given: Given, owner: type | None, siblings: dict[str, type]
) -> ConfigError | None:
    """The first given key `parser` does not have (with the closest key it has, else the closest key that one of
    `siblings`, the classes that could stand in for `owner`, has), or whose value is not one of its words."""
    actions = _settings(parser)
    for key, value in given.items:
        if not knows(parser, key):
            close, elsewhere = closest(key, _leaf_keys(actions)), ()
            if close is None:
                close, elsewhere = closest_elsewhere(type(parser), key, siblings)
            few = tuple(_leaf_keys(actions)) if len(_leaf_keys(actions)) <= FEW_KEYS else ()
            return UnknownKey(key, close, owner.__name__ if owner else None, elsewhere, given.dashes, few)
        words = words_of(actions.get(key))
        if words and isinstance(value, str) and value not in words and value not in ("null", "None"):
            return BadChoice(key, value, words, given.dashes)
    return None


def closest_elsewhere(parser_class: type, key: str, siblings: dict[str, type]) -> tuple[str | None, tuple[str, ...]]:
    """The key closest to `key` among the keys of `siblings` (by name), and the siblings that have it."""
    keys: dict[str, list[str]] = {}
    for name, sibling in siblings.items():
        parser = parser_class(exit_on_error=False)
        parser.add_class_arguments(sibling)
        for dest in _leaf_keys(_settings(parser)):
            keys.setdefault(dest, []).append(name)
    close = closest(key, keys)
    return (close, tuple(keys[close])) if close else (None, ())
