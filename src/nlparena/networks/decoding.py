"""Greedy decoding for any encoder-decoder exposing `encode`, `decode` and, for the cache, `init_cache` +
`decode_step`.

Shapes: B batch, L decoded length.
"""

from __future__ import annotations

from typing import Any

import torch

from nlparena.data.vocab import BOS, EOS, PAD


@torch.no_grad()
def greedy_decode(
    model: Any, src: torch.Tensor, max_len: int, use_cache: bool = True, bos_id: int = BOS, eos_id: int = EOS
) -> torch.Tensor:
    """Most likely token at each step until every row has produced EOS or `max_len` tokens.

    Returns (B, L) ids with L <= max_len; EOS is kept, everything after it is PAD.
    """
    memory = model.encode(src)
    batch = src.shape[0]
    tokens = torch.full((batch, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1 + steps)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    cache = model.init_cache(memory) if use_cache else None
    for _ in range(max_len):
        if cache is not None:
            logits = model.decode_step(memory, tokens[:, -1], cache)  # (B, V)
        else:
            logits = model.decode(memory, tokens)[:, -1]  # recompute the whole prefix
        nxt = logits.argmax(-1).masked_fill(finished, PAD)  # (B,)
        tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
        finished |= nxt == eos_id
        if bool(finished.all()):  # one host sync per step, to stop early
            break
    return tokens[:, 1:]
