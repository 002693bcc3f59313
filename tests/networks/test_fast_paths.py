"""The fast paths give the results of the plain ones: `torch.compile`, no attention mask for a batch without padding,
bf16 autocast; on a GPU, attention reaches SDPA's flash kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import NUM_SPECIALS, PAD
from nlparena.networks.bert import Bert, BertConfig
from nlparena.networks.layers import SelfAttention, padding_mask, shift_right
from nlparena.networks.transformer import Transformer, TransformerConfig
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB

# the loss of a compiled network may differ from the eager one's in float rounding only (inductor fuses and reorders
# float32 operations): 1e-5 relative
COMPILE_RTOL, COMPILE_ATOL = 1e-5, 1e-6


def transformer() -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(D_MODEL, HEADS, D_FF, 0.0, num_encoder_layers=2, num_decoder_layers=2)
    return Transformer(config, VOCAB, MAX_LEN)


def bert() -> Bert:
    torch.manual_seed(0)
    return Bert(BertConfig(D_MODEL, HEADS, D_FF, 0.0, num_layers=2), VOCAB, MAX_LEN)


def tokens(length: int, pad_from: int | None = None) -> torch.Tensor:
    ids = torch.randint(NUM_SPECIALS, VOCAB, (BATCH, length), generator=torch.Generator().manual_seed(length))
    if pad_from is not None:
        ids[0, pad_from:] = PAD
    return ids


def transformer_loss(net: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(src, shift_right(tgt)).flatten(0, 1), tgt.flatten(), ignore_index=PAD)


def bert_loss(net: Bert, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    states = net(ids, segments)
    return states.square().mean() + net.pool(states).square().mean()


CASES = {
    "Transformer": (transformer, transformer_loss, lambda: (tokens(SRC_LEN, pad_from=4), tokens(TGT_LEN))),
    "BERT": (bert, bert_loss, lambda: (tokens(SRC_LEN, pad_from=4), torch.zeros(BATCH, SRC_LEN, dtype=torch.long))),
}


@pytest.mark.parametrize("name", CASES)
def test_compiled_network_gives_the_eager_loss_and_gradients(name):
    build, loss_of, inputs = CASES[name]
    eager, compiled = build(), build()
    compiled.compile()  # as `--model.compile true` does: in place, the parameter names stay
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in eager.named_parameters()]
    batch = inputs()
    for net in (eager, compiled):
        loss_of(net, *batch).backward()
    torch.testing.assert_close(loss_of(compiled, *batch), loss_of(eager, *batch), rtol=COMPILE_RTOL, atol=COMPILE_ATOL)
    for (key, a), (_, b) in zip(compiled.named_parameters(), eager.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=key)


def test_padding_mask_is_none_without_padding_and_marks_real_tokens_with_it():
    assert padding_mask(tokens(SRC_LEN)) is None
    padded = tokens(SRC_LEN, pad_from=4)
    assert torch.equal(padding_mask(padded), padded != PAD)


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_without_a_mask_equals_attention_with_an_all_true_mask(is_causal):
    # Networks pass no mask for a batch without padding (`padding_mask`); with padding, the outputs of the real tokens
    # are those of the unpadded batch (tests/networks/test_transformer.py and test_bert.py).
    torch.manual_seed(0)
    attn = SelfAttention(D_MODEL, HEADS, causal=is_causal).eval()
    x = torch.randn(BATCH, SRC_LEN, D_MODEL)
    everyone = torch.ones(BATCH, SRC_LEN, dtype=torch.bool)
    if is_causal:  # SDPA refuses is_causal with a mask: compare with the causal mask spelt out
        causal = torch.ones(SRC_LEN, SRC_LEN, dtype=torch.bool).tril()
        q, k, v = (attn.split_heads(t) for t in attn.in_proj(x).chunk(3, dim=-1))
        masked = F.scaled_dot_product_attention(q, k, v, attn_mask=causal & everyone[:, None, None, :])
        expected = attn.out_proj(masked.transpose(1, 2).reshape(BATCH, SRC_LEN, D_MODEL))
    else:
        expected = attn(x, everyone)
    torch.testing.assert_close(attn(x, None), expected)


@pytest.mark.parametrize("name", CASES)
def test_bf16_autocast_on_cpu_stays_close_to_float32(name):
    build, loss_of, inputs = CASES[name]
    net, batch = build().eval(), inputs()
    with torch.autocast("cpu", torch.bfloat16):
        low = loss_of(net, *batch)
    torch.testing.assert_close(low.float(), loss_of(net, *batch), rtol=2e-2, atol=1e-2)  # bf16 keeps 8 bits


@pytest.mark.gpu
@pytest.mark.parametrize("name", CASES)
def test_attention_reaches_the_flash_kernel_on_a_gpu_when_no_row_is_padded(name):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    build, loss_of, inputs = CASES[name]
    net = build().cuda()
    batch = [t.cuda() for t in (tokens(SRC_LEN), *inputs()[1:])]
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):  # flash or an error
        loss_of(net, *batch).backward()
    padded = [t.cuda() for t in inputs()]
    with torch.autocast("cuda", torch.bfloat16):  # with padding: a masked kernel, the padded row still exact
        loss_of(net, *padded).backward()
