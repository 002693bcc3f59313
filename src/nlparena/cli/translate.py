"""`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print a trained model's translation of each input.

A checkpoint of users' text holds its tokenizer: raw sentences are tokenized with it (words it does not know become
unknown pieces) and the translations printed as detokenized text. A synthetic task's checkpoint takes its tokens,
space-separated. `--file` translates a file line by line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch

from nlparena.cli.lightning import subclasses
from nlparena.data.text_tokenizer import TextTokenizer
from nlparena.data.vocab import NUM_SPECIALS, SPECIALS, Vocab
from nlparena.errors import ConfigError, OneLineArgumentParser, one_line, shorten
from nlparena.models import TranslationModel
from nlparena.models.base import check_finite_weights
from nlparena.models.checkpoint_file import read_checkpoint

TRANSLATION_MODELS = "Transformer, Seq2Seq or Seq2SeqAttention"


def load_translation_model(path: Path) -> tuple[TranslationModel, Vocab | TextTokenizer]:
    """The translation model of a checkpoint written by `nlparena fit`, and its tokenizer (users' text) or vocabulary
    (a synthetic task); one line naming the file if it is anything else."""
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
    if checkpoint.get("tokenizer"):
        return model, TextTokenizer.from_json(checkpoint["tokenizer"])
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


def encode_text(text: str, tokenizer: TextTokenizer, max_len: int) -> list[int]:
    """The ids of one sentence of text; words the tokenizer does not know become its unknown pieces. A ConfigError
    for a special token typed in it, an empty sentence or one longer than the model takes."""
    ids = tokenizer.encode(text)
    typed = [tokenizer.tokens[i] for i in ids if i in tokenizer.special_ids and i != tokenizer.unk_id]
    if typed:
        raise ConfigError(f"token {typed[0]!r} in {shorten(text)!r} is a special token, added by the model, not typed")
    if not ids:
        raise ConfigError("empty input: give at least one word")
    if len(ids) > max_len:
        raise ConfigError(f"input {shorten(text)!r} has {len(ids)} tokens; this model takes at most {max_len}")
    return ids


def ids_of(text: str, vocab: Vocab | TextTokenizer, max_len: int) -> list[int]:
    if isinstance(vocab, TextTokenizer):
        return encode_text(text, vocab, max_len)
    return encode(text, vocab, max_len)


def file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of `--file`, read as it is translated; one line naming the file (and the
    line) if it cannot be read."""
    what = f"--file {path}"
    if path.is_dir():
        raise ConfigError(f"{what}: is a folder, not a text file")
    if not path.is_file():
        raise ConfigError(f"{what}: no such file")
    with path.open("rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{what}: line {number} is not UTF-8 text (byte {err.start + 1})") from None


def translations(model: TranslationModel, vocab: Vocab | TextTokenizer, rows: list[list[int]]) -> list[str]:
    """The model's translation of each row of ids, decoded as one batch."""
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(row) for row in rows], batch_first=True, padding_value=model.pad_id
    )  # (B, S)
    with torch.inference_mode():
        return [vocab.decode(out) for out in model.decode(src)]


def translate_file(path: Path, model: TranslationModel, vocab: Vocab | TextTokenizer, batch_size: int) -> None:
    """Print the translation of each line of `path`, `batch_size` lines at a time (an empty line stays empty)."""
    lines = file_lines(path)
    while batch := list(islice(lines, batch_size)):
        rows: dict[int, list[int]] = {}
        for index, (number, text) in enumerate(batch):
            if text.strip():
                try:
                    rows[index] = ids_of(text, vocab, model.max_len)
                except ConfigError as err:
                    raise ConfigError(f"--file {path} line {number}: {err}") from None
        outputs = dict(zip(rows, translations(model, vocab, list(rows.values())), strict=True)) if rows else {}
        for index in range(len(batch)):
            print(outputs.get(index, ""))


def translate_options(args: list[str]) -> argparse.Namespace:
    """The options of `nlparena translate`, each bad one a ConfigError naming it."""
    parser = OneLineArgumentParser(prog="nlparena translate", description="Translate with a trained checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `nlparena fit`")
    parser.add_argument("--decode", choices=["greedy", "beam"], help="default: the model's own setting")
    parser.add_argument("--beam_size", type=int, help="beams of beam search (implies --decode beam)")
    parser.add_argument("--length_penalty", type=float, help="beam search's length penalty (implies --decode beam)")
    parser.add_argument("--file", type=Path, help="translate each line of this text file (UTF-8) instead")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences decoded together (default 64)")
    parser.add_argument("inputs", nargs="*", help='one string per sentence: raw text, or a task\'s tokens "3 9 4 1"')
    opts = parser.parse_args(args)
    if not opts.inputs and opts.file is None:
        raise ConfigError("nlparena translate: give the sentences to translate (inputs) or --file")
    if opts.inputs and opts.file is not None:
        raise ConfigError(f"--file {opts.file}: give sentences or --file, not both")
    if opts.beam_size is not None and opts.beam_size < 1:  # the checks `fit` makes of model.beam_size and ...
        raise ConfigError(f"--beam_size {opts.beam_size}: must be at least 1")
    if opts.length_penalty is not None and opts.length_penalty < 0:  # ... of model.length_penalty
        raise ConfigError(f"--length_penalty {opts.length_penalty}: must be at least 0 (0: rank by log-probability)")
    if opts.batch_size < 1:
        raise ConfigError(f"--batch_size {opts.batch_size}: must be at least 1")
    # a beam setting asks for beam search; given with greedy decoding it would be ignored without a word
    beam = [
        f"--{key} {getattr(opts, key)}" for key in ("beam_size", "length_penalty") if getattr(opts, key) is not None
    ]
    if beam and opts.decode == "greedy":
        raise ConfigError(f"{beam[0]}: a setting of beam search, not of --decode greedy; leave one of them out")
    opts.implied_beam = beam[0] if beam and opts.decode is None else None  # said when the model decodes greedily
    if beam:
        opts.decode = "beam"
    return opts


def translate(args: list[str]) -> None:
    """`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print the model's translation of each input."""
    opts = translate_options(args)
    model, vocab = load_translation_model(Path(opts.ckpt_path))
    if opts.beam_size is not None and opts.beam_size > len(vocab):
        # each beam is a copy of the input through the decoder: a million of them never ends; wider than the
        # vocabulary, a beam only keeps more of the unlikely continuations
        raise ConfigError(
            f"--beam_size {opts.beam_size}: must be at most {len(vocab)}, the size of this model's vocabulary"
        )
    if opts.implied_beam and model.decoding != "beam":
        print(
            f"nlparena: {opts.implied_beam} asks for beam search: decoding with --decode beam, not {model.decoding}",
            file=sys.stderr,
        )
    settings = {"decoding": opts.decode, "beam_size": opts.beam_size, "length_penalty": opts.length_penalty}
    for name, value in settings.items():
        if value is not None:
            setattr(model, name, value)
    model.eval()
    if opts.file is not None:
        translate_file(opts.file, model, vocab, opts.batch_size)
        return
    rows = [ids_of(text, vocab, model.max_len) for text in opts.inputs]  # every input checked before any output
    for start in range(0, len(rows), opts.batch_size):
        for line in translations(model, vocab, rows[start : start + opts.batch_size]):
            print(line)
