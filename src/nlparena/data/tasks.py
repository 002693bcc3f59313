"""Pure, vectorised generators for the translation tasks (torch only, no Lightning).

Every generator draws a whole split at once from a `torch.Generator`, so the same
(seed, split) always gives the same tensors, whatever process or worker asks.

Shapes: N examples, S source width, T target width (targets end with EOS, then PAD).
"""

from __future__ import annotations

import torch

from nlparena.data.vocab import EOS, NUM_SPECIALS, PAD, Vocab

SPLITS = ("train", "val", "test", "predict")


def split_generator(seed: int, split: str) -> torch.Generator:
    """A generator that depends on (seed, split) only; splits never share a stream."""
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))


def random_lengths(g: torch.Generator, n: int, lo: int, hi: int) -> torch.Tensor:
    """(N,) lengths drawn uniformly from [lo, hi]."""
    return torch.randint(lo, hi + 1, (n,), generator=g)


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(N, width) True where position < length."""
    return torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)


def append_eos(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, S) tokens padded after `lengths` -> (N, S + 1) with EOS at position `lengths`."""
    out = torch.cat([tokens, torch.full_like(tokens[:, :1], PAD)], dim=1)  # (N, S + 1)
    out.scatter_(1, lengths.unsqueeze(1), EOS)
    return out


def compact(slots: torch.Tensor) -> torch.Tensor:
    """Move the non-PAD entries of each row to the front, keeping their order."""
    order = torch.sort((slots == PAD).to(torch.uint8), dim=1, stable=True).indices
    out = slots.gather(1, order)
    width = int((out != PAD).sum(1).max())
    return out[:, :width]


def sequence_keys(tokens: torch.Tensor) -> torch.Tensor:
    """(N, S) -> (N,) int64 key; equal token sequences (ignoring PAD width) get equal keys."""
    key = torch.zeros(tokens.shape[0], dtype=torch.int64)
    for col in tokens.T:  # a loop over positions, not examples; int64 overflow wraps, which is fine for a key
        key = torch.where(col != PAD, key * 1_000_003 + col, key)
    return key


# Counts of distinct inputs stop here: they are only compared with split sizes, and the exact count of sequences of
# length 100000 is a number of 100000 digits, slow to compute.
CAPACITY_CAP = 2**62


def distinct_sequences(num_symbols: int, lo: int, hi: int, cap: int = CAPACITY_CAP) -> int:
    """How many different sequences of length lo..hi exist over `num_symbols` symbols, at most `cap`."""
    if num_symbols <= 1:
        return min(max(hi - lo + 1, 0) if num_symbols == 1 else 0, cap)
    total = 0
    for length in range(lo, hi + 1):
        total += num_symbols**length
        if total >= cap:  # reached after at most log2(cap) lengths
            return cap
    return total


class SymbolTask:
    """Sequences of random symbols; subclasses say what the target is."""

    min_length = 1

    def __init__(self, num_symbols: int) -> None:
        self.num_symbols = num_symbols
        self.vocab = Vocab([str(i) for i in range(num_symbols)])

    def max_target_length(self, max_source_length: int) -> int:
        return max_source_length + 1  # + EOS

    def capacity(self, lo: int, hi: int) -> int:
        return distinct_sequences(self.num_symbols, lo, hi)

    def generate(self, g: torch.Generator, n: int, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(src (N, S), tgt (N, S + 1)) with S = hi."""
        lengths = random_lengths(g, n, lo, hi)
        symbols = torch.randint(NUM_SPECIALS, NUM_SPECIALS + self.num_symbols, (n, hi), generator=g)
        src = symbols.masked_fill(~padding_mask(lengths, hi), PAD)
        return src, append_eos(self.target(src, lengths), lengths)

    def target(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CopyTask(SymbolTask):
    """The target is the source."""

    def target(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return src.clone()


class ReverseTask(SymbolTask):
    """The target is the source read backwards."""

    def target(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(src.shape[1]).unsqueeze(0)  # (1, S)
        index = (lengths.unsqueeze(1) - 1 - pos).clamp(min=0)  # (N, S): position read for each output
        return src.gather(1, index).masked_fill(pos >= lengths.unsqueeze(1), PAD)


class SortTask(SymbolTask):
    """The target is the source sorted ascending."""

    def target(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        big = torch.iinfo(src.dtype).max
        ordered = src.masked_fill(src == PAD, big).sort(dim=1).values
        return ordered.masked_fill(ordered == big, PAD)


class LanguagePairTask:
    """A toy language pair: SVO with pre-nominal adjectives -> SOV with post-nominal adjectives.

    Source: [adj* noun PL?] verb [adj* noun PL?]. The translation puts the verb last, moves
    adjectives after their noun, maps every word through a seed-fixed lexicon (every third
    noun becomes two words), marks plural adjectives with an agreement token and ends the
    verb with a subject-agreement token. Alignments are neither diagonal nor one-to-one.
    """

    min_length = 3  # subject, verb, object

    def __init__(self, num_nouns: int, num_verbs: int, num_adjectives: int, lexicon_seed: int) -> None:
        self.sizes = (num_nouns, num_verbs, num_adjectives)
        src = [f"N{i}" for i in range(num_nouns)] + [f"V{i}" for i in range(num_verbs)]
        src += [f"A{i}" for i in range(num_adjectives)] + ["PL"]
        tgt = [f"n{i}" for i in range(num_nouns)] + [f"n{i}'" for i in range(num_nouns)]
        tgt += [f"v{i}" for i in range(num_verbs)] + [f"a{i}" for i in range(num_adjectives)]
        tgt += ["pl", "agr.sg", "agr.pl"]
        self.vocab = Vocab(src + tgt)
        ids = self.vocab.index
        self.noun_ids = torch.tensor([ids[f"N{i}"] for i in range(num_nouns)])
        self.verb_ids = torch.tensor([ids[f"V{i}"] for i in range(num_verbs)])
        self.adj_ids = torch.tensor([ids[f"A{i}"] for i in range(num_adjectives)])
        self.pl_id = ids["PL"]
        # Lexicon: source word -> (first target word, second target word or PAD), a seed-fixed permutation.
        g = torch.Generator().manual_seed(lexicon_seed)
        self.lexicon = torch.full((len(self.vocab), 2), PAD, dtype=torch.int64)
        for src_prefix, tgt_prefix, count in (
            ("N", "n", num_nouns),
            ("V", "v", num_verbs),
            ("A", "a", num_adjectives),
        ):
            for i, j in enumerate(torch.randperm(count, generator=g).tolist()):
                self.lexicon[ids[f"{src_prefix}{i}"], 0] = ids[f"{tgt_prefix}{j}"]
                if src_prefix == "N" and j % 3 == 0:
                    self.lexicon[ids[f"N{i}"], 1] = ids[f"n{j}'"]
        self.tgt_pl, self.agr_sg, self.agr_pl = ids["pl"], ids["agr.sg"], ids["agr.pl"]

    def max_target_length(self, max_source_length: int) -> int:
        return 2 * max_source_length + 1  # every source word gives at most two target words; + EOS

    def capacity(self, lo: int, hi: int, cap: int = CAPACITY_CAP) -> int:
        """How many different sources of length lo..hi exist, at most `cap`."""
        nouns, verbs, adjs = self.sizes
        total = 0
        for length in range(max(lo, 3), hi + 1):
            extras = length - 3
            for plurals in range(3):  # how many of the two nouns are marked plural
                ways_pl = (1, 2, 1)[plurals]
                r = extras - plurals
                if r >= 0:
                    total += nouns**2 * verbs * ways_pl * (r + 1) * adjs**r
            if total >= cap:  # adjs >= 2: reached after at most log2(cap) lengths
                return cap
        return total

    def generate(self, g: torch.Generator, n: int, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(src (N, <=hi), tgt (N, <=2*hi + 1))."""
        lengths = random_lengths(g, n, lo, hi)
        extras = lengths - 3
        pl_s = (torch.rand(n, generator=g) < 0.5) & (extras >= 1)
        pl_o = (torch.rand(n, generator=g) < 0.5) & (extras - pl_s.long() >= 1)
        rest = extras - pl_s.long() - pl_o.long()
        n_adj_s = (torch.rand(n, generator=g) * (rest + 1)).floor().long()
        n_adj_o = rest - n_adj_s
        width = max(hi - 3, 0)

        def pick(ids: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
            return ids[torch.randint(len(ids), shape, generator=g)]

        noun_s, noun_o, verb = pick(self.noun_ids, (n,)), pick(self.noun_ids, (n,)), pick(self.verb_ids, (n,))
        slot = torch.arange(width).unsqueeze(0)  # (1, width)
        adj_s = pick(self.adj_ids, (n, width)).masked_fill(slot >= n_adj_s.unsqueeze(1), PAD)
        adj_o = pick(self.adj_ids, (n, width)).masked_fill(slot >= n_adj_o.unsqueeze(1), PAD)

        def marker(flag: torch.Tensor, token: int) -> torch.Tensor:
            return torch.where(flag, token, PAD).unsqueeze(1)  # (N, 1)

        subject = [adj_s, noun_s[:, None], marker(pl_s, self.pl_id)]
        obj = [adj_o, noun_o[:, None], marker(pl_o, self.pl_id)]
        src = compact(torch.cat([*subject, verb[:, None], *obj], dim=1))

        def noun_phrase(noun: torch.Tensor, adjs: torch.Tensor, plural: torch.Tensor) -> torch.Tensor:
            agreement = torch.where(plural.unsqueeze(1) & (adjs != PAD), self.agr_pl, PAD)  # (N, width)
            adj_words = torch.stack([self.lexicon[adjs, 0], agreement], dim=2).flatten(1)  # (N, 2 * width)
            return torch.cat([self.lexicon[noun], marker(plural, self.tgt_pl), adj_words], dim=1)

        verb_agr = torch.where(pl_s, self.agr_pl, self.agr_sg).unsqueeze(1)
        parts = [noun_phrase(noun_s, adj_s, pl_s), noun_phrase(noun_o, adj_o, pl_o), self.lexicon[verb, :1], verb_agr]
        tgt = compact(torch.cat(parts, dim=1))
        return src, append_eos(tgt, (tgt != PAD).sum(1))
