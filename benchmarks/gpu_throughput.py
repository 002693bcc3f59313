"""Training speed of our Transformer and BERT against `torch.nn.Transformer` and Hugging Face `BertModel` of the same
sizes, eager and compiled (`torch.compile`), and on a GPU their MFU (model FLOPs utilisation) in bf16.

A step is forward, loss, backward and AdamW on a fixed batch. Every variant runs `--steps` steps per round and the
variants alternate in each round, so machine noise hits them alike; the script prints the median step time, the
ratio ours / baseline and, with a known GPU, MFU = FLOPs of a step (counted by `torch.utils.flop_counter`) / step
time / the GPU's dense bf16 peak.

Sizes: on a GPU the anchors (`torch.nn.Transformer` 6 + 6 layers, d 512, d_ff 2048, vocabulary 8k, length 128,
batch 256; BERT base, batch 64, length 512, no padding); on CPU d 256, 4 heads, d_ff 1024, 3 layers, batch 32,
row lengths 48-64 (padded).

    python benchmarks/gpu_throughput.py                          # CUDA if there is one, else CPU
    python benchmarks/gpu_throughput.py --device cpu --rounds 5 --compile
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nlparena.data.vocab import PAD
from nlparena.networks.bert import Bert, BertConfig
from nlparena.networks.layers import shift_right
from nlparena.networks.transformer import Transformer, TransformerConfig

# dense bf16 tensor-core peak FLOP/s by GPU name (vendor data sheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class Sizes:
    d_model: int
    n_heads: int
    d_ff: int
    layers: int
    vocab: int
    batch: int
    lengths: tuple[int, int]  # (min, max) real tokens per row; rows are padded to the max


SIZES = {
    "cuda": {
        "transformer": Sizes(512, 8, 2048, 6, 8000, 256, (128, 128)),
        "bert": Sizes(768, 12, 3072, 12, 30522, 64, (512, 512)),
    },
    "cpu": {
        "transformer": Sizes(256, 4, 1024, 3, 1000, 32, (48, 64)),
        "bert": Sizes(256, 4, 1024, 3, 1000, 32, (48, 64)),
    },
}


class TorchTransformer(nn.Module):
    """`torch.nn.Transformer` with what ours has around it: one shared token embedding scaled by sqrt(D), sinusoidal
    positions, dropout, pre-norm layers with GELU, and the output projection tied to the embedding."""

    def __init__(self, s: Sizes, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(s.vocab, s.d_model, padding_idx=PAD)
        position = torch.arange(s.lengths[1] + 1).unsqueeze(1)
        freq = torch.exp(torch.arange(0, s.d_model, 2) * (-math.log(10_000.0) / s.d_model))
        table = torch.zeros(s.lengths[1] + 1, s.d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
        self.register_buffer("positions", table, persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(
            s.d_model, s.n_heads, s.layers, s.layers, s.d_ff, dropout, "gelu", batch_first=True, norm_first=True
        )
        self.generator = nn.Linear(s.d_model, s.vocab)
        self.generator.weight = self.embed.weight
        self.scale = math.sqrt(s.d_model)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embed(ids) * self.scale + self.positions[: ids.shape[1]])

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        src_pad = src == PAD
        # the mask only with padding, as ours does; a compiled graph always gets it (no data-dependent branch)
        src_pad = src_pad if torch.compiler.is_compiling() or bool(src_pad.any()) else None
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=src.device)
        out = self.transformer(
            self.embed_tokens(src),
            self.embed_tokens(tgt_in),
            tgt_mask=causal,
            src_key_padding_mask=src_pad,
            memory_key_padding_mask=src_pad,
            tgt_is_causal=True,
        )
        return self.generator(out)


def hugging_face_bert(s: Sizes) -> nn.Module:
    import transformers  # the hf extra

    config = transformers.BertConfig(
        vocab_size=s.vocab,
        hidden_size=s.d_model,
        num_hidden_layers=s.layers,
        num_attention_heads=s.n_heads,
        intermediate_size=s.d_ff,
        max_position_embeddings=s.lengths[1],
        pad_token_id=PAD,
        attn_implementation="sdpa",
    )
    return transformers.BertModel(config)


def token_batch(s: Sizes, generator: torch.Generator) -> torch.Tensor:
    """(B, max length) random ids of rows with lengths in `s.lengths`, padded with PAD."""
    lo, hi = s.lengths
    ids = torch.randint(PAD + 6, s.vocab, (s.batch, hi), generator=generator)  # above the special tokens
    lengths = torch.randint(lo, hi + 1, (s.batch,), generator=generator)
    return ids.masked_fill(torch.arange(hi) >= lengths[:, None], PAD)


def translation_loss(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    logits = model(src, shift_right(tgt))
    return F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=PAD)


def ours_bert_loss(model: Bert, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    states = model(ids, segments)
    return states.float().square().mean() + model.pool(states).float().square().mean()


def hugging_face_bert_loss(model: nn.Module, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    out = model(ids, attention_mask=(ids != PAD).long(), token_type_ids=segments)
    return out.last_hidden_state.float().square().mean() + out.pooler_output.float().square().mean()


@dataclass
class Variant:
    name: str
    model: nn.Module
    loss: Callable[..., torch.Tensor]
    inputs: tuple[torch.Tensor, ...]
    compiled: bool
    times: list[float]
    flops: int = 0

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.forward = torch.compile(self.loss) if self.compiled else self.loss

    def step(self, bf16: bool) -> None:
        with torch.autocast(self.inputs[0].device.type, torch.bfloat16, enabled=bf16):
            loss = self.forward(self.model, *self.inputs)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def count_flops(self, bf16: bool) -> None:
        """FLOPs of forward + backward (the matmuls and attention; the optimizer's elementwise work is not counted)."""
        counter = FlopCounterMode(display=False)
        with counter, torch.autocast(self.inputs[0].device.type, torch.bfloat16, enabled=bf16):
            self.loss(self.model, *self.inputs).backward()
        self.optimizer.zero_grad(set_to_none=True)
        self.flops = counter.get_total_flops()


def build(device: torch.device, which: list[str], compiled: bool) -> list[Variant]:
    generator = torch.Generator().manual_seed(0)
    variants = []
    for kind in which:
        s = SIZES[device.type][kind]
        if kind == "transformer":
            config = TransformerConfig(s.d_model, s.n_heads, s.d_ff, 0.1, s.layers, s.layers)
            pair = (
                ("ours Transformer", Transformer(config, s.vocab, s.lengths[1] + 1)),
                ("torch.nn.Transformer", TorchTransformer(s)),
            )
            inputs = (token_batch(s, generator).to(device), token_batch(s, generator).to(device))
            losses = (translation_loss, translation_loss)
        else:
            ids = token_batch(s, generator)
            segments = (torch.arange(ids.shape[1]) >= ids.shape[1] // 2).long().expand_as(ids).contiguous()
            config = BertConfig(s.d_model, s.n_heads, s.d_ff, 0.1, num_layers=s.layers)
            pair = (
                ("ours BERT", Bert(config, s.vocab, s.lengths[1])),
                ("Hugging Face BertModel", hugging_face_bert(s)),
            )
            inputs = (ids.to(device), segments.to(device))
            losses = (ours_bert_loss, hugging_face_bert_loss)
        for (name, model), loss in zip(pair, losses, strict=True):
            for compile_it in (False, True) if compiled else (False,):
                label = f"{name} ({'compiled' if compile_it else 'eager'})"
                variants.append(Variant(label, model.to(device).train(), loss, inputs, compile_it, []))
    return variants


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", choices=["transformer", "bert"], default=["transformer", "bert"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (compilation)")
    parser.add_argument("--compile", action="store_true", help="also time each model through torch.compile")
    args = parser.parse_args()

    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    variants = build(device, args.models, args.compile)
    for v in variants:
        v.count_flops(bf16)
        for _ in range(args.warmup):
            v.step(bf16)
    for _ in range(args.rounds):
        for v in variants:
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                v.step(bf16)
            sync(device)
            v.times.append((time.perf_counter() - start) / args.steps)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    peak = next((p for key, p in PEAK_BF16.items() if key in name), None)
    print(f"\n{name}, {'bf16 autocast' if bf16 else 'float32'}, {args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':42s} {'step ms':>9s} {'TFLOP/s':>8s} {'MFU':>6s}")
    medians = {}
    for v in variants:
        medians[v.name] = step = statistics.median(v.times)
        mfu = f"{v.flops / step / peak:6.1%}" if peak else "     -"
        print(f"{v.name:42s} {step * 1e3:9.2f} {v.flops / step / 1e12:8.3f} {mfu}")
    print("ratios (step time, ours / baseline; below 1 is faster):")
    for ours, theirs in (("ours Transformer", "torch.nn.Transformer"), ("ours BERT", "Hugging Face BertModel")):
        for mode in ("eager", "compiled"):
            a, b = f"{ours} ({mode})", f"{theirs} ({mode})"
            if a in medians and b in medians:
                print(f"  {ours} / {theirs}, {mode}: {medians[a] / medians[b]:.3f}")


if __name__ == "__main__":
    main()
