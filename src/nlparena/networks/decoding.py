"""Greedy and beam search for every encoder-decoder (Transformer, Seq2Seq, Seq2SeqAttention).

A network takes part by exposing `encode(src) -> memory`, `decode(memory, tgt_in) -> logits`,
`init_cache(memory) -> cache` and `decode_step(memory, token, cache) -> logits`, where every tensor
inside memory and cache has the batch as its first dimension (so beams can be reordered generically).

Shapes: B batch, K beams, L decoded length, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from nlparena.data.vocab import BOS, EOS, PAD
from nlparena.networks.layers import shift_right


class EncoderDecoder(Protocol):
    def encode(self, src: torch.Tensor) -> Any: ...
    def decode(self, memory: Any, tgt_in: torch.Tensor) -> torch.Tensor: ...
    def init_cache(self, memory: Any) -> Any: ...
    def decode_step(self, memory: Any, token: torch.Tensor, cache: Any) -> torch.Tensor: ...


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], tree: Any) -> Any:
    """Apply fn to every tensor in nested dataclasses, lists, tuples and dicts; other leaves are kept."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(
            tree, **{f.name: map_tensors(fn, getattr(tree, f.name)) for f in dataclasses.fields(tree)}
        )
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tensors(fn, x) for x in tree)
    if isinstance(tree, dict):
        return {k: map_tensors(fn, v) for k, v in tree.items()}
    return tree


def select_beams(tree: Any, beams: torch.Tensor) -> Any:
    """Reorder states of shape (B*K, ...) so that beam k of row b takes the state of beam `beams[b, k]`."""
    B, K = beams.shape

    def gather(t: torch.Tensor) -> torch.Tensor:
        rest = t.shape[1:]
        grouped = t.view(B, K, *rest)  # (B, K, ...)
        index = beams.view(B, K, *([1] * len(rest))).expand(B, K, *rest)
        return grouped.gather(1, index).view(B * K, *rest)

    return map_tensors(gather, tree)


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoder,
    src: torch.Tensor,
    max_len: int,
    use_cache: bool = True,
    bos_id: int = BOS,
    eos_id: int = EOS,
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
        nxt = never_emit(logits).argmax(-1).masked_fill(finished, PAD)  # (B,)
        tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
        finished |= nxt == eos_id
        if bool(finished.all()):  # one host sync per step, to stop early
            break
    return tokens[:, 1:]


def never_emit(logits: torch.Tensor, banned: tuple[int, ...] = (PAD, BOS)) -> torch.Tensor:
    """Logits (..., V) with PAD and BOS made impossible: a decoded PAD would read as the end of the output."""
    return logits.index_fill(-1, torch.tensor(banned, device=logits.device), float("-inf"))


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016); alpha = 0 ranks by total log-probability."""
    return ((5.0 + lengths) / 6.0) ** alpha


def keep_greedy_path(
    candidates: torch.Tensor, scores: torch.Tensor, flat: torch.Tensor, greedy_flat: torch.Tensor
) -> torch.Tensor:
    """Keep the greedy path (`greedy_flat` (B,), its index among the candidates (B, K*V)) among the top-K survivors
    `flat` / `scores` (B, K), in the last slot if it fell out; returns the beam that now holds it (B,). In place.

    Plain beam search can prune the greedy prefix for prefixes that look better now and turn out worse; keeping it
    means the search never returns a less likely output than greedy decoding."""
    rows = torch.arange(flat.shape[0], device=flat.device)
    in_beam = flat == greedy_flat.unsqueeze(1)  # (B, K)
    kept = in_beam.any(1)
    flat[:, -1] = torch.where(kept, flat[:, -1], greedy_flat)
    scores[:, -1] = torch.where(kept, scores[:, -1], candidates[rows, greedy_flat])
    return torch.where(kept, in_beam.int().argmax(1), flat.shape[1] - 1)


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src: torch.Tensor,
    max_len: int,
    beam_size: int = 4,
    alpha: float = 0.0,
    bos_id: int = BOS,
    eos_id: int = EOS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched beam search; returns the best hypothesis per row (B, L) and its total log-probability (B,).

    Finished hypotheses stay in the beam and extend only with PAD at no cost, competing with the live
    ones on total log-probability; the final choice divides by the length penalty. The greedy path is
    always one of the beams, so (with alpha 0) the result is never less likely than greedy decoding's;
    with beam_size 1 this is greedy decoding.
    """
    B, K, device = src.shape[0], beam_size, src.device
    memory = map_tensors(lambda t: t.repeat_interleave(K, dim=0), model.encode(src))  # (B*K, ...)
    cache = model.init_cache(memory)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one, or the first step would fill the beam with copies
    tokens = torch.full((B, K, 1), bos_id, dtype=torch.long, device=device)  # (B, K, 1 + steps)
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B, K, device=device)  # tokens up to and including EOS
    rows = torch.arange(B, device=device)
    greedy = torch.zeros(B, dtype=torch.long, device=device)  # which beam holds the greedy path
    for _ in range(max_len):
        logits = model.decode_step(memory, tokens[:, :, -1].reshape(B * K), cache).float()
        logp = never_emit(F.log_softmax(logits, -1))  # the model's log-probabilities, not renormalised
        V = logp.shape[-1]
        logp = logp.view(B, K, V)
        # A finished beam can only append PAD, at log-probability 0, so it keeps its score.
        pad_only = torch.full_like(logp[0, 0], float("-inf")).index_fill(0, torch.tensor(PAD, device=device), 0.0)
        logp = torch.where(finished.unsqueeze(-1), pad_only, logp)
        candidates = (scores.unsqueeze(-1) + logp).view(B, K * V)  # (B, K*V)
        scores, flat = candidates.topk(K, dim=1)  # (B, K), best first
        greedy = keep_greedy_path(candidates, scores, flat, greedy * V + logp[rows, greedy].argmax(-1))
        beams, nxt = flat // V, flat % V  # which beam each survivor extends, with which token
        tokens = tokens.gather(1, beams.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))  # (B, K, 1 + steps)
        tokens = torch.cat([tokens, nxt.unsqueeze(-1)], dim=2)
        was_finished = finished.gather(1, beams)
        lengths = lengths.gather(1, beams) + (~was_finished).float()
        finished = was_finished | (nxt == eos_id)
        cache = select_beams(cache, beams)
        # Stop when every beam is done, or (ranking by raw log-probability) when each row's best is done:
        # the live beams' scores can only fall.
        best_done = finished[:, 0] if alpha == 0.0 else finished.all(1)
        if bool(best_done.all()):
            break
    ranked = scores / length_penalty(lengths.clamp(min=1), alpha)
    best = ranked.argmax(1)  # (B,)
    out = tokens[rows, best, 1:]  # (B, L)
    return out, scores.gather(1, best.unsqueeze(1)).squeeze(1)


def sequence_log_prob(model: EncoderDecoder, src: torch.Tensor, out: torch.Tensor, eos_id: int = EOS) -> torch.Tensor:
    """Total log-probability (B,) the model gives to decoded ids out (B, L) up to and including the first EOS."""
    logp = F.log_softmax(model.decode(model.encode(src), shift_right(out)).float(), -1)  # (B, L, V)
    token_logp = logp.gather(2, out.unsqueeze(-1)).squeeze(-1)  # (B, L)
    after_eos = (out == eos_id).long().cumsum(1) - (out == eos_id).long()  # 1 after the first EOS
    return token_logp.masked_fill(after_eos.bool(), 0.0).sum(1)
