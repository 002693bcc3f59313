"""Special token ids, shared by every task and model, and the id <-> string table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

PAD, BOS, EOS, SEP, CLS, MASK = 0, 1, 2, 3, 4, 5
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>", "<cls>", "<mask>")
NUM_SPECIALS = len(SPECIALS)


class Vocab:
    """Token strings for the specials followed by a task's own symbols; id i is `tokens[i]`."""

    detokenizes = False  # `decode` joins token strings with spaces (a TextTokenizer gives back the text)

    def __init__(self, symbols: Sequence[str]) -> None:
        self.tokens = list(SPECIALS) + list(symbols)
        self.index = {tok: i for i, tok in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("token strings must be unique")

    def __len__(self) -> int:
        return len(self.tokens)

    def to_json(self) -> None:
        """None: a synthetic vocabulary is rebuilt from the data's settings (a TextTokenizer returns its JSON)."""
        return None

    def decode(self, ids: Iterable[int] | torch.Tensor, strip: bool = True) -> str:
        """Ids to a space-separated string; stops at EOS and drops PAD/BOS when `strip`."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if strip and i == EOS:
                break
            if strip and i in (PAD, BOS):
                continue
            out.append(self.tokens[i])
        return " ".join(out)

    def strings(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ids up to and including the first EOS, without PAD (labels for figures)."""
        out = []
        for i in ids:
            if i != PAD:
                out.append(self.tokens[i])
            if i == EOS:
                break
        return out

    def encode(self, text: str) -> list[int]:
        """A space-separated string to ids; raises KeyError naming the first unknown token."""
        ids = []
        for tok in text.split():
            if tok not in self.index:
                raise KeyError(tok)
            ids.append(self.index[tok])
        return ids
