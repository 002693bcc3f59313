"""The tokenizer that a run's weights were trained with travels with them: a checkpoint of `--ckpt_path` or
`--model.pretrained PATH` holds it (`checkpoint["tokenizer"]`), a Hugging Face folder of `--model.pretrained hf:PATH`
has its `tokenizer.json`. A data module of text files given such weights reads that tokenizer (its
`data.tokenizer.file` is set to it before the data is built) instead of training another one on its own files, whose
ids would not be the ones the embeddings were trained on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from nlparena.data.text_cache import cache_root
from nlparena.data.text_tokenizer import TextTokenizer
from nlparena.errors import ConfigError
from nlparena.models.checkpoint_file import read_checkpoint
from nlparena.models.hugging_face import PREFIX, is_hugging_face

HUGGING_FACE_TOKENIZER = "tokenizer.json"  # what a Hugging Face tokenizer's `save_pretrained` writes
CHECKPOINT_TOKENIZERS = "tokenizers/of_checkpoints"  # under the data's cache: each one as FINGERPRINT.json


def tokenizer_of_weights(config: Namespace, checkpoint: dict[str, Any] | None) -> tuple[TextTokenizer, str] | None:
    """The tokenizer the weights of this run come with, and where from (`--ckpt_path PATH`, `model.pretrained=...`,
    the tokenizer file of a Hugging Face folder); None when they bring none (synthetic data's checkpoints)."""
    if checkpoint is not None and checkpoint.get("tokenizer"):
        return TextTokenizer.from_json(checkpoint["tokenizer"]), f"--ckpt_path {config.get('ckpt_path')}"
    pretrained = config.model.init_args.get("pretrained")
    if not isinstance(pretrained, str):
        return None
    what = f"model.pretrained={pretrained}"
    if is_hugging_face(pretrained):
        file = Path(pretrained.removeprefix(PREFIX), HUGGING_FACE_TOKENIZER)
        return (TextTokenizer.from_file(file, what), f"{what} ({file})") if file.is_file() else None
    saved = read_checkpoint(pretrained, what).get("tokenizer")
    return (TextTokenizer.from_json(saved), what) if saved else None


def stored_tokenizer(tokenizer: TextTokenizer, root: Path) -> Path:
    """`tokenizer` as a file under the data's cache folder `root`, named by its fingerprint (written once, whole): a
    path that config.yaml can name and a later run can read again."""
    path = root / CHECKPOINT_TOKENIZERS / f"{tokenizer.fingerprint}.json"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(tokenizer.to_json())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def give_data_the_tokenizer_of_weights(config: Namespace, checkpoint: dict[str, Any] | None) -> None:
    """When the data reads text files (it has `data.tokenizer`) and the weights bring a tokenizer, set
    `data.tokenizer.file` to it; a `data.tokenizer.file` given that holds another tokenizer is refused in one line."""
    data = config.data.init_args
    if not isinstance(data.get("tokenizer"), Namespace):
        return
    brought = tokenizer_of_weights(config, checkpoint)
    if brought is None:
        return
    tokenizer, where = brought
    given = data.tokenizer.get("file")
    if given is None:
        data.tokenizer.file = str(stored_tokenizer(tokenizer, cache_root(data.get("cache_dir"))))
        return
    if TextTokenizer.from_file(given, f"data.tokenizer.file={given}").fingerprint != tokenizer.fingerprint:
        raise ConfigError(
            f"data.tokenizer.file={given}: another tokenizer than the one of {where}, which its weights were trained "
            "with; leave data.tokenizer.file out to use that one"
        )
