"""`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print a trained model's translation of each input."""

from __future__ import annotations

from pathlib import Path

import torch

from nlparena.cli.lightning import subclasses
from nlparena.data.vocab import NUM_SPECIALS, SPECIALS, Vocab
from nlparena.errors import ConfigError, OneLineArgumentParser, one_line, shorten
from nlparena.models import TranslationModel
from nlparena.models.base import check_finite_weights
from nlparena.models.checkpoint_file import read_checkpoint

TRANSLATION_MODELS = "Transformer, Seq2Seq or Seq2SeqAttention"


def load_translation_model(path: Path) -> tuple[TranslationModel, Vocab]:
    """The translation model of a checkpoint written by `nlparena fit`, and its vocabulary; one line naming the file
    if it is anything else."""
    what = f"--ckpt_path {path}"
    checkpoint = read_checkpoint(path, what)
    class_path = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    # The model class is one of ours, named in the hyperparameters that LightningCLI saved; nothing is imported.
    model_class = subclasses(TranslationModel).get(class_path)
    if model_class is None:
        held = f"holds a {str(class_path).rsplit('.', 1)[-1]}" if class_path else "names no model class"
        raise ConfigError(f"{what}: {held}, not a translation model ({TRANSLATION_MODELS}) written by `nlparena fit`")
    if "vocabulary" not in checkpoint:
        raise ConfigError(f"{what}: has no vocabulary: not written by `nlparena fit`")
    check_finite_weights(checkpoint["state_dict"], what)
    try:
        model = model_class.load_from_checkpoint(path, map_location="cpu")
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = one_line(f"{type(err).__name__}: {err}", 120)
        raise ConfigError(f"{what}: not a translation checkpoint written by `nlparena fit` ({reason})") from None
    return model, Vocab(checkpoint["vocabulary"][NUM_SPECIALS:])


def encode(text: str, vocab: Vocab, max_len: int) -> list[int]:
    """The ids of one input; a ConfigError (quoting a long input only in part) if it cannot be translated."""
    allowed = shorten(" ".join(vocab.tokens[NUM_SPECIALS:]), 120)
    special = next((token for token in text.split() if token in SPECIALS), None)
    if special is not None:
        raise ConfigError(
            f"token {special!r} in {shorten(text)!r} is a special token, added by the model, not typed; "
            f"allowed: {allowed}"
        )
    try:
        ids = vocab.encode(text)
    except KeyError as err:
        unknown = f"token {shorten(err.args[0], 20)!r} in {shorten(text)!r} is not in the vocabulary"
        raise ConfigError(f"{unknown}; allowed: {allowed}") from None
    if not ids:
        raise ConfigError('empty input: give at least one token, for example "3 9 4 1"')
    if len(ids) > max_len:
        raise ConfigError(f"input {shorten(text)!r} has {len(ids)} tokens; this model takes at most {max_len}")
    return ids


def translate(args: list[str]) -> None:
    """`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print the model's translation of each input."""
    parser = OneLineArgumentParser(prog="nlparena translate", description="Translate with a trained checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `nlparena fit`")
    parser.add_argument("--decode", choices=["greedy", "beam"], help="default: the model's own setting")
    parser.add_argument("--beam_size", type=int)
    parser.add_argument("--length_penalty", type=float)
    parser.add_argument("inputs", nargs="+", help='space-separated tokens, one string per sentence: "3 9 4 1"')
    opts = parser.parse_args(args)
    if opts.beam_size is not None and opts.beam_size < 1:  # the checks `fit` makes of model.beam_size and ...
        raise ConfigError(f"--beam_size {opts.beam_size}: must be at least 1")
    if opts.length_penalty is not None and opts.length_penalty < 0:  # ... of model.length_penalty
        raise ConfigError(f"--length_penalty {opts.length_penalty}: must be at least 0 (0: rank by log-probability)")
    model, vocab = load_translation_model(Path(opts.ckpt_path))
    if opts.beam_size is not None and opts.beam_size > len(vocab):
        # each beam is a copy of the input through the decoder: a million of them never ends; wider than the
        # vocabulary, a beam only keeps more of the unlikely continuations
        raise ConfigError(
            f"--beam_size {opts.beam_size}: must be at most {len(vocab)}, the size of this model's vocabulary"
        )
    settings = {"decoding": opts.decode, "beam_size": opts.beam_size, "length_penalty": opts.length_penalty}
    for name, value in settings.items():
        if value is not None:
            setattr(model, name, value)
    rows = [torch.tensor(encode(text, vocab, model.max_len)) for text in opts.inputs]
    src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=model.pad_id)  # (B, S)
    model.eval()
    for out in model.decode(src):
        print(vocab.decode(out))
