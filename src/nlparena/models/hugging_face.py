"""Hugging Face BERT weights from a local `save_pretrained` folder: `--model.pretrained hf:PATH`.

Needs the `hf` extra (`pip install 'nlparena[hf]'`: transformers, which brings safetensors); nothing is
downloaded. The folder's config must give the sizes of `model.bert`, which the error names when they differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nlparena.errors import ConfigError, one_line
from nlparena.networks.bert import BertConfig, state_from_hugging_face

PREFIX = "hf:"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # what save_pretrained writes, newest first
# Hugging Face BertConfig field -> ours (`model.bert.<key>`)
SIZES = {
    "hidden_size": "d_model",
    "num_attention_heads": "n_heads",
    "intermediate_size": "d_ff",
    "num_hidden_layers": "num_layers",
    "type_vocab_size": "num_segments",
    "layer_norm_eps": "layer_norm_eps",
}


def is_hugging_face(pretrained: str | None) -> bool:
    return pretrained is not None and pretrained.startswith(PREFIX)


def _read_config(folder: Path, what: str, transformers: Any) -> Any:
    """The folder's `config.json` as a transformers config; a ConfigError naming the file if it is not one (not JSON,
    no or an unknown `model_type`, a value of the wrong type)."""
    try:
        return transformers.AutoConfig.from_pretrained(folder)
    except Exception as err:  # OSError (not JSON), ValueError (model_type), huggingface_hub's validation errors, ...
        reason = one_line(str(err).split(". ", 1)[0], 120)
        raise ConfigError(f"{what}: {folder / 'config.json'} is not a Hugging Face config ({reason})") from None


def read_hugging_face_bert(pretrained: str, config: BertConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """The weights of the BERT saved in the folder of `hf:PATH`, as a `BertForPretraining` state dict (without the
    pre-training heads when the folder has none); a ConfigError naming `model.pretrained` or the size key if the
    folder is not a BERT of this model's sizes and this data's vocabulary size."""
    what = f"model.pretrained={pretrained}"
    folder = Path(pretrained.removeprefix(PREFIX))
    try:
        import transformers
        from safetensors.torch import load_file
    except ImportError:
        raise ConfigError(f"{what}: Hugging Face weights need transformers: pip install 'nlparena[hf]'") from None
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{what}: no config.json in {folder} (give a folder written by save_pretrained)")
    hf = _read_config(folder, what, transformers)
    if hf.model_type != "bert":
        raise ConfigError(f"{what}: a {hf.model_type!r} model, not BERT")
    for setting, ours in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
        if getattr(hf, setting, ours) != ours:
            raise ConfigError(f"{what}: its {setting} is {getattr(hf, setting)!r}; this BERT has {ours!r} only")
    for hf_key, key in SIZES.items():
        if getattr(hf, hf_key) != getattr(config, key):
            value = getattr(hf, hf_key)
            raise ConfigError(
                f"{what}: its {hf_key} is {value}, model.bert.{key} is {getattr(config, key)}; "
                f"set --model.bert.{key}={value}"
            )
    if hf.vocab_size != vocab_size:
        raise ConfigError(f"{what}: its vocabulary has {hf.vocab_size} tokens, this data's {vocab_size}")
    file = next((folder / name for name in WEIGHTS if (folder / name).is_file()), None)
    if file is None:
        raise ConfigError(f"{what}: no model.safetensors or pytorch_model.bin in {folder}")
    try:
        if file.suffix == ".safetensors":
            weights = load_file(file)
        else:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' and torch's errors for a file cut short or of another kind
        reason = one_line(f"{type(err).__name__}: {err}", 120)
        raise ConfigError(f"{what}: {file} cannot be read as weights ({reason})") from None
    return state_from_hugging_face(weights)  # refused if non-finite where every pretrained encoder is loaded
