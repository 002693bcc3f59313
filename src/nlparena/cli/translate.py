"""`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print a trained model's translation of each input."""

from __future__ import annotations

from pathlib import Path

import torch

from nlparena.cli.lightning import subclasses
from nlparena.data.vocab import NUM_SPECIALS, Vocab
from nlparena.errors import ConfigError, OneLineArgumentParser
from nlparena.models import TranslationModel


def translate(args: list[str]) -> None:
    """`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print the model's translation of each input."""
    parser = OneLineArgumentParser(prog="nlparena translate", description="Translate with a trained checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `nlparena fit`")
    parser.add_argument("--decode", choices=["greedy", "beam"], help="default: the model's own setting")
    parser.add_argument("--beam_size", type=int)
    parser.add_argument("--length_penalty", type=float)
    parser.add_argument("inputs", nargs="+", help='space-separated tokens, one string per sentence: "3 9 4 1"')
    opts = parser.parse_args(args)
    path = Path(opts.ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        vocab = Vocab(checkpoint["vocabulary"][NUM_SPECIALS:])
        # The model class is one of ours, named in the hyperparameters that LightningCLI saved; nothing is imported.
        model_class = subclasses(TranslationModel)[checkpoint["hyper_parameters"]["_class_path"]]
        model = model_class.load_from_checkpoint(path, map_location="cpu")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = f"not a translation checkpoint written by `nlparena fit` ({type(err).__name__}: {err})"
        raise ConfigError(f"--ckpt_path {path}: {reason}") from None
    settings = {"decoding": opts.decode, "beam_size": opts.beam_size, "length_penalty": opts.length_penalty}
    for name, value in settings.items():
        if value is not None:
            setattr(model, name, value)
    if model.beam_size < 1:
        raise ConfigError(f"--beam_size {model.beam_size}: must be at least 1")
    rows = []
    for text in opts.inputs:
        try:
            ids = vocab.encode(text)
        except KeyError as err:
            allowed = " ".join(vocab.tokens[NUM_SPECIALS:])
            unknown = f"token {err.args[0]!r} in {text!r} is not in the vocabulary"
            raise ConfigError(f"{unknown}; allowed: {allowed}") from None
        if not ids:
            raise ConfigError('empty input: give at least one token, for example "3 9 4 1"')
        if len(ids) > model.max_len:
            raise ConfigError(f"input {text!r} has {len(ids)} tokens; this model takes at most {model.max_len}")
        rows.append(torch.tensor(ids))
    src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=model.pad_id)  # (B, S)
    model.eval()
    for out in model.decode(src):
        print(vocab.decode(out))
