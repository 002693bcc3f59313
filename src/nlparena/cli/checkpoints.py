"""`--ckpt_path` of `nlparena fit|validate|test|predict`: required where untrained weights would be evaluated, read
before anything is built, its model settings merged into the config, and checked against the model and data built
from that config, every failure one line naming the file.

LightningCLI merges a checkpoint's hyperparameters over the config, so that a typed `--model.transformer.d_model 32`
was silently replaced by the checkpoint's 64. Here the checkpoint's value is taken only for settings the config left
at their default; a network size (or another setting the weights depend on) that the config changed must be the
checkpoint's; training and decoding settings the config changed are kept (`test --model.decode beam`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import instantiate_class

from nlparena.cli.checks import DATA_DECIDED
from nlparena.cli.refusals import REFUSALS, message_of, signature_defaults
from nlparena.data.text_tokenizer import TextTokenizer
from nlparena.errors import ConfigError, shorten
from nlparena.models import ArenaModel
from nlparena.models.base import flatten
from nlparena.models.checkpoint_file import read_checkpoint

EVALUATING = ("validate", "test", "predict")
_MISSING = object()


def class_defaults(model_class: type) -> dict[str, Any]:
    """The default of every constructor argument of `model_class`, following `**kwargs` up the classes it inherits
    from as jsonargparse does (network configs, dataclasses, as dotted keys)."""
    defaults = signature_defaults(model_class)
    return flatten({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in defaults.items()})


def typed_sizes(model_class: type | None, init_args: Namespace) -> dict[str, Any]:
    """The sizes the data decides (`vocab_size`, `max_len`, ...) that the config gives a value of its own."""
    defaults = class_defaults(model_class) if model_class is not None else {}
    given = {size: init_args.get(size) for size in DATA_DECIDED}
    return {size: value for size, value in given.items() if value is not None and value != defaults.get(size)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def read_run_checkpoint(subcommand: str, config: Namespace, models: dict[str, type]) -> dict[str, Any] | None:
    """The checkpoint `--ckpt_path` names, read (one line if it cannot be), with its model settings merged into
    `config` (the subcommand's); None without one. `validate`, `test` and `predict` need one (but in a
    `--trainer.fast_dev_run` smoke run)."""
    path = config.get("ckpt_path")
    if not path:
        if subcommand in EVALUATING and not config.trainer.get("fast_dev_run"):
            raise ConfigError(
                f"nlparena {subcommand}: give --ckpt_path, the checkpoint to {subcommand} (a .ckpt file written by "
                "`nlparena fit`); without one the weights are untrained"
            )
        return None
    what = f"--ckpt_path {path}"
    checkpoint = read_checkpoint(path, what)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    saved_class = models.get(hparams.pop("_class_path", None))
    if saved_class is None:
        raise ConfigError(f"{what}: not written by `nlparena fit` (its hyperparameters name no nlparena model)")
    model_class = models.get(config.model.class_path)
    if model_class is not saved_class:
        given = model_class.__name__ if model_class else config.model.class_path
        raise ConfigError(f"{what}: holds a {saved_class.__name__}, not a {given}; give --model {saved_class.__name__}")
    hparams.pop("_instantiator", None)
    _merge(config.model.init_args, hparams, saved_class, path)
    return checkpoint


def _merge(init_args: Namespace, hparams: dict[str, Any], model_class: type, path: str) -> None:
    defaults, given = class_defaults(model_class), flatten(init_args)
    weights = {key for key, value in hparams.items() if isinstance(value, dict)} | set(model_class.weight_settings)
    for key, saved in flatten(hparams).items():
        top = key.split(".", 1)[0]
        if top in DATA_DECIDED or key not in given or _plain(given[key]) == _plain(saved):
            continue
        if _plain(given[key]) == _plain(defaults.get(key, _MISSING)):
            init_args[key] = saved  # left at its default: the checkpoint's, as its weights need
        elif top in weights:
            raise ConfigError(
                f"model.{key}={given[key]}: the checkpoint {path} was trained with {key}={saved}; its weights need "
                f"that: leave the setting out or give {saved}"
            )


def check_checkpoint_fits(checkpoint: dict[str, Any], path: str, model: ArenaModel, data: LightningDataModule) -> None:
    """The checkpoint's vocabulary, data-decided sizes and tensor shapes must be those of the model built for this
    data (a checkpoint of another vocabulary fails in one line, not in a `size mismatch` traceback)."""
    what = f"--ckpt_path {path}"
    data_name = type(data).__name__
    saved_vocab, vocab = checkpoint.get("vocabulary"), getattr(data, "vocab", None)
    check_same_tokenizer(checkpoint, what, vocab, data_name)
    if saved_vocab is not None and vocab is not None and list(saved_vocab) != list(vocab.tokens):
        raise ConfigError(
            f"{what}: trained on another vocabulary ({len(saved_vocab)} tokens; --data {data_name} with these "
            f"settings has {len(vocab.tokens)}); give the data settings of the run that wrote it"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    for size in DATA_DECIDED:
        saved, now = hparams.get(size), getattr(model, size, None)
        if size != "max_len" and saved is not None and now is not None and saved != now:
            raise ConfigError(
                f"{what}: trained with {size} {saved}; --data {data_name} with these settings gives {now}; give the "
                "data settings of the run that wrote it"
            )
    ours = model.state_dict()
    for key, tensor in checkpoint["state_dict"].items():
        mine = ours.get(key)
        if mine is None or not hasattr(tensor, "shape") or tuple(mine.shape) == tuple(tensor.shape):
            continue
        if key.endswith("positions.table.weight") and tensor.shape[1:] == mine.shape[1:]:
            if tensor.shape[0] >= mine.shape[0]:
                continue  # a learned positional table, cut to the data's lengths when loaded
            saved = tensor.shape[0]
            raise ConfigError(
                f"{what}: the checkpoint's learned positional table holds {saved} positions but the data needs "
                f"{mine.shape[0]}: shorten data.*_lengths to at most {saved - 1}, or train with longer ones"
            )
        shapes = f"{'×'.join(map(str, tensor.shape))} in it, {'×'.join(map(str, mine.shape))} in this model"
        raise ConfigError(f"{what}: does not fit this model ({shorten(key, 60)} is {shapes}); give its model settings")
    missing = [key for key in ours if key not in checkpoint["state_dict"]]
    if missing:
        raise ConfigError(f"{what}: lacks {len(missing)} of this model's tensors ({shorten(missing[0], 60)}, ...)")


def check_same_tokenizer(checkpoint: dict[str, Any], what: str, vocab: Any, data_name: str) -> None:
    """A checkpoint of text data must be given data read with its own tokenizer: the same token strings under
    another tokenizer's rules (normalisation, pre-tokenization, merges) are other ids for the same text."""
    saved = checkpoint.get("tokenizer")
    ours = vocab.to_json() if vocab is not None else None
    if saved is None or ours is None or TextTokenizer.from_json(saved).fingerprint == vocab.fingerprint:
        return
    source = getattr(vocab, "source", None) or "trained on data.train_file"
    raise ConfigError(
        f"{what}: trained with another tokenizer than the one --data {data_name} reads its text with ({source}); "
        "leave data.tokenizer.file out to use the checkpoint's"
    )


def check_optimizer_state(checkpoint: dict[str, Any], path: str, model: ArenaModel, optimizer_init: Any) -> None:
    """Resuming (`fit --ckpt_path`) loads the checkpoint's optimizer state into the config's optimizer: it must be
    that optimizer's, for these parameters (another optimizer's state fails at the first step, `KeyError: 'momentum'`).
    Loaded here into an optimizer built for the check."""
    states = checkpoint.get("optimizer_states")
    if not states or not optimizer_init:
        return
    what, name = f"--ckpt_path {path}", optimizer_init["class_path"].rsplit(".", 1)[-1]
    optimizer = instantiate_class(model.parameters(), optimizer_init)
    wanted = {key for group in optimizer.param_groups for key in group}
    try:
        optimizer.load_state_dict(states[0])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ConfigError(f"{what}: its optimizer state does not fit --optimizer {name} ({message_of(err)})") from None
    lacking = sorted(wanted - {key for group in optimizer.param_groups for key in group})
    if lacking:
        raise ConfigError(
            f"{what}: its optimizer state is not --optimizer {name}'s (it has no {', '.join(lacking)}); resume with "
            "the optimizer it was trained with"
        )


def load_refusal(path: str, model: ArenaModel) -> str | None:
    """Why the weights of the checkpoint at `path` do not load into `model` as Lightning loads them (its
    `strict_loading`); None when they load. Asked on the error path only, after a run failed while it was set up."""
    try:
        checkpoint = read_checkpoint(path, f"--ckpt_path {path}")
        model.load_state_dict(checkpoint["state_dict"], strict=model.strict_loading)
    except ConfigError as err:
        return str(err)
    except (*REFUSALS, RuntimeError) as err:
        return message_of(err)
    return None
