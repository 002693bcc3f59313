"""Which setting a class refused, found by elimination, never by reading the error's text or its traceback.

When torch, Lightning or one of our classes refuses a value while a class is built (`Invalid learning rate: -1.0`,
`You selected an invalid accelerator name`), the class is built again with one given argument changed back to its
default at a time; the argument whose reset lets the class build is the config key to name, beside the library's own
message. A library that rewords its messages changes nothing here. This runs on the error path only: a run that
starts builds every class once.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from jsonargparse import ArgumentParser, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from nlparena.errors import ConfigError, one_line

# what torch or Lightning raise for a value they refuse while a class is built
REFUSALS = (ValueError, TypeError, KeyError, IndexError, AssertionError, MisconfigurationException, ArithmeticError)
_MISSING = object()
_PLAIN = (bool, int, float, str, list, tuple, type(None))  # values a config gives; built objects are not probed


def message_of(err: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return one_line(text or type(err).__name__, 200)


def class_of(class_path: str) -> type:
    """The class a config's `class_path` names."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def signature_defaults(cls: type) -> dict[str, Any]:
    """The default of every constructor argument of `cls` that has one, following `**kwargs` up the classes it
    inherits from, as jsonargparse does."""
    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        for parameter in parameters:
            if parameter.default is not parameter.empty:
                defaults.setdefault(parameter.name, parameter.default)
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    return defaults


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)  # a config's list is a signature's tuple
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _is_dataclass_value(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _field_defaults(value: Any) -> dict[str, Any]:
    defaults = {}
    for field in dataclasses.fields(value):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def probes(given: dict[str, Any], defaults: dict[str, Any], zero_divided: bool) -> Iterator[tuple[str, Any]]:
    """(dotted key, value to try instead) for each given setting: its default where it has one and the given value
    differs; after a division by zero, 1 for a setting given as 0. A network config (a dataclass) field by field."""
    for name, value in given.items():
        default = defaults.get(name, _MISSING)
        if _is_dataclass_value(value):
            nested = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
            for key, probe in probes(nested, _field_defaults(value), zero_divided):
                yield f"{name}.{key}", probe
        elif not isinstance(value, _PLAIN):
            continue
        elif default is not _MISSING and isinstance(default, _PLAIN) and not _same(value, default):
            yield name, default
        elif zero_divided and not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0:
            yield name, 1


def changed(given: Any, key: str, value: Any) -> Any:
    """`given` (a dict of arguments, or a dataclass) with the setting at dotted `key` replaced by `value`."""
    name, _, rest = key.partition(".")
    if isinstance(given, dict):
        return {**given, name: changed(given[name], rest, value) if rest else value}
    return dataclasses.replace(given, **{name: changed(getattr(given, name), rest, value) if rest else value})


def value_at(given: Any, key: str) -> Any:
    for name in key.split("."):
        given = given[name] if isinstance(given, dict) else getattr(given, name)
    return given


def _builds(build: Callable[[dict[str, Any]], object], arguments: dict[str, Any]) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(arguments)
    except Exception:
        return False
    return True


def refused_setting(
    err: BaseException, build: Callable[[dict[str, Any]], object], given: dict[str, Any], defaults: dict[str, Any]
) -> tuple[str, Any] | None:
    """(dotted key, given value) of the one setting whose reset lets `build(arguments)` succeed where `build(given)`
    fails; None when no single setting does (or `build(given)` does not fail as the refused build did)."""
    if _builds(build, given):
        return None
    for key, probe in probes(given, defaults, isinstance(err, ZeroDivisionError)):
        if _builds(build, changed(given, key, probe)):
            return key, value_at(given, key)
    return None


def named_refusal(
    err: BaseException,
    what: str,
    prefix: str | None,
    build: Callable[[dict[str, Any]], object],
    given: dict[str, Any],
    defaults: dict[str, Any],
) -> ConfigError:
    """The one line for `err`, raised by `build(given)`: `prefix + key=value: message` for the refused setting
    (`what: message (key=value)` without a prefix), `what: message` when no single setting is refused."""
    message = message_of(err)
    found = refused_setting(err, build, given, defaults)
    if found is None:
        return ConfigError(f"{what}: {message}")
    key, value = found
    if prefix is None:
        return ConfigError(f"{what}: {message} ({key}={value!r})")
    return ConfigError(f"{prefix}{key}={value!r}: {message}")


class BuildRecorder:
    """A jsonargparse instantiator that builds a class as the default one does and keeps the first build that
    failed: its class, arguments and error."""

    def __init__(self) -> None:
        self.failed: tuple[type, tuple[Any, ...], dict[str, Any], BaseException] | None = None

    def __call__(self, class_type: type, *args: Any, **kwargs: Any) -> Any:
        try:
            return class_type(*args, **kwargs)
        except Exception as err:
            if self.failed is None:
                self.failed = (class_type, args, kwargs, err)
            raise


def _component(cls: type) -> tuple[str, str | None]:
    """How a line names a built class, and the prefix of its keys."""
    if issubclass(cls, LightningModule):
        return f"--model {cls.__name__}", "model."
    if issubclass(cls, LightningDataModule):
        return f"--data {cls.__name__}", "data."
    if issubclass(cls, Callback):
        return f"trainer.callbacks {cls.__name__}", None
    if issubclass(cls, Logger):
        return f"trainer.logger {cls.__name__}", "trainer.logger.init_args."
    return cls.__name__, None


def build_error(err: BaseException, parser: ArgumentParser, config: Namespace) -> ConfigError:
    """The one line for an error raised while jsonargparse built the config's classes: they are built again one at a
    time, recording which one fails, and its refused setting is found by elimination."""
    recorder = BuildRecorder()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser.instantiate(config, instantiators=[(recorder, object, True)])
    except Exception:
        pass
    if recorder.failed is None:
        return ConfigError(f"cannot build the config's classes: {message_of(err)}")
    cls, args, kwargs, failure = recorder.failed
    what, prefix = _component(cls)
    return named_refusal(failure, what, prefix, lambda given: cls(*args, **given), kwargs, signature_defaults(cls))


def trainer_refusal(err: BaseException, trainer_class: type, config: dict[str, Any]) -> ConfigError:
    """The one line for `err`, raised by `trainer_class(**config)`: `trainer.key=value: message`."""
    callbacks = config.get("callbacks") or []
    given = {key: value for key, value in config.items() if key != "callbacks"}

    def trainer(settings: dict[str, Any]) -> Any:
        return trainer_class(**settings, callbacks=list(callbacks))  # a copy: the Trainer adds its own to the list

    return named_refusal(err, "trainer", "trainer.", trainer, given, signature_defaults(trainer_class))
