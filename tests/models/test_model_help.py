"""`nlparena fit --model.help MODEL` lists every setting of the model with its description, those its base classes
declare included (they reach the model through `**kwargs`), but the sizes the data decides."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli

# a setting -> the start of its description, as the class that declares it writes it
ARENA = {
    "compile": "run the network's forward through `torch.compile`",
}
# the sizes the data decides (the CLI passes them; typed, they are refused): not listed, never typed
DATA_DECIDED = ("vocab_size", "max_len", "pad_id", "num_classes")
TRANSLATION = {
    **ARENA,
    "label_smoothing": "mass moved from the gold token to the others in the loss",
    "num_samples": "sample translations written to TensorBoard",
    "decode": "how validation, test, predict and `nlparena translate` decode",
    "beam_size": "beams kept by beam search",
    "length_penalty": "beam search's length penalty",
}
CLASSIFICATION = {
    **ARENA,
    "label_smoothing": "mass moved from the gold class to the others in the loss",
}
SETTINGS = {
    "Seq2Seq": TRANSLATION,
    "Seq2SeqAttention": TRANSLATION,
    "Transformer": TRANSLATION,
    "RNNClassifier": CLASSIFICATION,
    "BertClassifier": {
        **CLASSIFICATION,
        "pooling": "what the head reads",
        "pretrained": "a BertPretraining checkpoint whose encoder",
    },
    "BertPretraining": {**ARENA, "nsp_weight": "weight of the NSP loss beside the MLM loss"},
}


def model_help(capsys, model: str) -> dict[str, str]:
    """`nlparena fit --model.help MODEL` as {setting: its description, on one line}."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", f"--model.help={model}")
    assert exit_info.value.code == 0
    entries: dict[str, str] = {}
    option = None
    for line in capsys.readouterr().out.splitlines():
        start = re.match(r"  --model\.(\w+)( \S+)?( {2,}.*)?$", line)  # `  --model.decode {greedy,beam}  text`
        if start:
            option = start.group(1)
            entries[option] = (start.group(3) or "").strip()
        elif option is not None and line.startswith("    "):
            entries[option] += " " + line.strip()
        else:
            option = None
    return {name: re.sub(r"\s*\((required, )?type: .*$", "", text).strip() for name, text in entries.items()}


@pytest.mark.parametrize("model", SETTINGS)
def test_model_help_describes_every_setting_the_base_classes_declare(capsys, model):
    described = model_help(capsys, model)
    for name, description in SETTINGS[model].items():
        assert name in described, f"--model.{name} is not in the help of {model}"
        assert described[name].startswith(description), f"--model.{name}: {described[name]!r}"
    for name in DATA_DECIDED:
        assert name not in described, f"--model.{name} is in the help of {model}, but the data decides it"
