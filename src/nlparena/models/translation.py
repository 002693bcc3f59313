"""Translation systems: a shared LightningModule base (loss, decoding, metrics) and one subclass per network."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassExactMatch
from torchmetrics.text import BLEUScore

from nlparena.data.vocab import EOS, PAD
from nlparena.errors import ConfigError
from nlparena.internals import logging_step
from nlparena.models.base import ArenaModel, cut_positional_tables, network_config
from nlparena.models.metrics import BucketedMean, RatioSums
from nlparena.networks.decoder_only import DecoderOnly as DecoderOnlyNetwork
from nlparena.networks.decoder_only import DecoderOnlyConfig
from nlparena.networks.decoding import beam_search, greedy_decode
from nlparena.networks.layers import shift_right
from nlparena.networks.rnn import AttentionConfig, Seq2SeqConfig
from nlparena.networks.rnn import Seq2Seq as Seq2SeqNetwork
from nlparena.networks.rnn import Seq2SeqAttention as Seq2SeqAttentionNetwork
from nlparena.networks.transformer import Transformer as TransformerNetwork
from nlparena.networks.transformer import TransformerConfig


class StageMetrics(nn.Module):
    """The metrics of one stage: the loss per target token, token accuracy, exact match, BLEU, and per source-length
    bucket the exact match, token accuracy and BLEU of the decoded output. Every state is a sum that torchmetrics adds
    up across processes, so N processes log what one does."""

    def __init__(self, vocab_size: int, pad_id: int, max_length: int) -> None:
        super().__init__()
        # Inputs are built by this model, so torchmetrics' per-update argument checks are skipped (they cost
        # about as much as a small model's training step).
        checks = {"ignore_index": pad_id, "validate_args": False}
        self.token_accuracy = MulticlassAccuracy(vocab_size, average="micro", **checks)
        self.exact_match = MulticlassExactMatch(vocab_size, **checks)
        self.bleu = BLEUScore(n_gram=4)
        self.loss = MeanMetric()  # weighted by target tokens: the mean over every token of the split
        self.exact_match_by_length = BucketedMean(max_length)
        self.token_accuracy_by_length = BucketedMean(max_length)  # of decoded output, not teacher-forced
        # corpus BLEU of each bucket's examples (Bahdanau et al. 2015, Fig. 2); its buckets are exact match's
        self.bleu_by_length = nn.ModuleList(BLEUScore(n_gram=4) for _ in range(self.exact_match_by_length.num_buckets))


def training_pairs(loss: torch.Tensor, preds: torch.Tensor, tgt: torch.Tensor, pad_id: int) -> list[torch.Tensor]:
    """(numerator, denominator) of the batch's loss per target token, token accuracy and exact match, flat, for
    `RatioSums(("loss", "token_accuracy", "exact_match"))`; PAD positions do not count."""
    real = tgt != pad_id
    tokens, right = real.sum(), (preds == tgt) | ~real
    rows = torch.full_like(tokens, len(tgt))
    return [loss * tokens, tokens, (right & real).sum(), tokens, right.all(1).sum(), rows]


def align(decoded: torch.Tensor, width: int) -> torch.Tensor:
    """Pad with PAD or cut decoded ids (B, L) to (B, width), to compare with a target."""
    if decoded.shape[1] >= width:
        return decoded[:, :width]
    return F.pad(decoded, (0, width - decoded.shape[1]), value=PAD)


def ids_to_text(ids: torch.Tensor) -> list[str]:
    """(B, L) ids -> one string of ids per row, up to EOS (BLEU on ids equals BLEU on words)."""
    texts = []
    for row in ids.tolist():
        row = row[: row.index(EOS)] if EOS in row else row
        texts.append(" ".join(str(i) for i in row if i != PAD))
    return texts


class TranslationModel(ArenaModel):
    """Shared training, decoding and metrics for every encoder-decoder; subclasses build `self.net`.

    Args:
        label_smoothing: mass moved from the gold token to the others in the loss.
        num_samples: sample translations written to TensorBoard each validation epoch.
        decode: how validation, test, predict and `nlparena translate` decode: "greedy" or "beam".
        beam_size: beams kept by beam search.
        length_penalty: beam search's length penalty (GNMT's alpha; 0 ranks by total log-probability).

    The other settings are ArenaModel's. A subclass takes its network's config and passes the rest on as `**kwargs`;
    jsonargparse follows them here, so every argument is a config key of the subclass, and its `--model.help` shows
    the descriptions above (one name per entry, so that the docstring parses).
    """

    family = "translation"
    headline_metric = "val/exact_match"
    sequences_per_position_table = 1  # a learned positional table holds this many times max_len rows

    def __init__(
        self,
        label_smoothing: float = 0.1,
        num_samples: int = 4,
        decode: Literal["greedy", "beam"] = "greedy",
        beam_size: int = 4,
        length_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing={label_smoothing}: must be in [0, 1)")
        if decode not in ("greedy", "beam"):
            raise ConfigError(f"model.decode={decode!r}: choose one of ['beam', 'greedy']")
        if beam_size < 1:
            raise ConfigError(f"model.beam_size={beam_size}: must be at least 1")
        if length_penalty < 0:
            raise ConfigError(f"model.length_penalty={length_penalty}: must be at least 0")
        self.label_smoothing, self.num_samples = label_smoothing, num_samples
        self.decoding, self.beam_size, self.length_penalty = decode, beam_size, length_penalty
        self.train_window = RatioSums(("loss", "token_accuracy", "exact_match"))  # per token, token, sequence
        self.val_metrics = StageMetrics(self.vocab_size, self.pad_id, self.max_len)
        self.test_metrics = StageMetrics(self.vocab_size, self.pad_id, self.max_len)
        self.net: nn.Module
        self._samples: dict[str, torch.Tensor] = {}

    def logged_metrics(self) -> list[str]:
        train = [f"train/{name}" for name in ("loss", "token_accuracy", "exact_match")]
        val = [f"val/{name}" for name in ("loss", "token_accuracy", "exact_match", "bleu")]
        by_length = [f"val/{key}_by_length/*" for key in ("exact_match", "token_accuracy", "bleu")]
        return [*train, *val, *by_length]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V)."""
        return self.net(src, tgt_in)

    def loss(self, logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Label-smoothed cross-entropy over real target tokens (PAD ignored)."""
        return F.cross_entropy(
            logits.flatten(0, 1),
            tgt.flatten(),
            ignore_index=self.pad_id,
            label_smoothing=self.label_smoothing,
        )

    def decode(self, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Translation (B, L) of src (B, S), greedy or by beam search as configured."""
        max_len = max_len or self.max_len
        if self.decoding == "beam":
            return beam_search(self.net, src, max_len, self.beam_size, self.length_penalty)[0]
        return greedy_decode(self.net, src, max_len)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        src, tgt = batch["src"], batch["tgt"]
        logits = self(src, shift_right(tgt))
        loss = self.loss(logits, tgt)
        pairs = training_pairs(loss.detach(), logits.argmax(-1), tgt, self.pad_id)  # teacher-forced predictions
        self.log_training_window(self.train_window, pairs)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, list]:
        """The test metrics, and each example's source, reference, output and correctness (`TestOutputs`)."""
        return self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.decode(batch["src"])

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> dict[str, list]:
        """Loss and token accuracy teacher-forced; exact match and BLEU on decoded output. Returns each example's
        source, reference, output and whether it is an exact match."""
        src, tgt = batch["src"], batch["tgt"]
        m: StageMetrics = getattr(self, f"{stage}_metrics")
        logits = self(src, shift_right(tgt))
        m.loss.update(self.loss(logits, tgt), weight=(tgt != self.pad_id).sum())
        self.log(f"{stage}/loss", m.loss, prog_bar=stage == "val")
        m.token_accuracy(logits.argmax(-1), tgt)
        decoded = align(self.decode(src, max_len=tgt.shape[1]), tgt.shape[1])  # (B, T)
        m.exact_match(decoded, tgt)
        real = tgt != self.pad_id  # (B, T)
        right = (decoded == tgt) & real
        src_lengths = (src != self.pad_id).sum(1)  # (B,)
        m.exact_match_by_length.update(src_lengths, (right.sum(1) == real.sum(1)).float())
        m.token_accuracy_by_length.update(src_lengths, right.sum(1).float(), real.sum(1).float())
        outputs, references = ids_to_text(decoded), [[ref] for ref in ids_to_text(tgt)]
        m.bleu.update(outputs, references)
        buckets = m.exact_match_by_length.bucket_of(src_lengths).tolist()
        for bucket in sorted(set(buckets)):
            rows = [i for i, b in enumerate(buckets) if b == bucket]
            m.bleu_by_length[bucket].update([outputs[i] for i in rows], [references[i] for i in rows])
        self.log(f"{stage}/token_accuracy", m.token_accuracy)
        self.log(f"{stage}/exact_match", m.exact_match, prog_bar=stage == "val")
        self.log(f"{stage}/bleu", m.bleu)
        if batch_idx == 0:
            k = self.num_samples
            self._samples = {"src": src[:k], "tgt": tgt[:k], "out": decoded[:k]}
        if stage != "test":
            return {}
        show = self._show()
        return {
            "source": [show(row) for row in src],
            "reference": [show(row) for row in tgt],
            "output": [show(row) for row in decoded],
            "correct": (right.sum(1) == real.sum(1)).tolist(),  # what exact match counts
        }

    def _show(self) -> Any:
        """Ids (a row) -> the data's words, or the ids themselves when the data module has no vocabulary."""
        vocab = getattr(self.trainer.datamodule, "vocab", None)
        return vocab.decode if vocab is not None else (lambda ids: " ".join(map(str, ids.tolist())))

    def on_validation_epoch_end(self) -> None:
        self._log_length_buckets("val")
        if not self.trainer.sanity_checking:
            self._log_samples("val")

    def on_test_epoch_end(self) -> None:
        self._log_length_buckets("test")
        self._log_samples("test")

    def _log_length_buckets(self, stage: str) -> None:
        m: StageMetrics = getattr(self, f"{stage}_metrics")
        for key, metric in (
            ("exact_match_by_length", m.exact_match_by_length),
            ("token_accuracy_by_length", m.token_accuracy_by_length),
        ):
            rates = metric.compute()  # on every rank, after the sync, so every rank logs the same buckets
            for name, rate, empty in zip(metric.bucket_names(), rates, rates.isnan().tolist(), strict=True):
                if not empty:  # equal on every process already; sync_dist (a mean of equal values) as Lightning expects
                    self.log(f"{stage}/{key}/{name}", rate, sync_dist=True)
        # the buckets that hold examples on some process (every process knows them from the synced exact match)
        names, filled = m.exact_match_by_length.bucket_names(), (~m.exact_match_by_length.compute().isnan()).tolist()
        for name, bleu, has_examples in zip(names, m.bleu_by_length, filled, strict=True):
            if has_examples:
                self.log(f"{stage}/bleu_by_length/{name}", bleu.compute(), sync_dist=True)
            bleu.reset()
        m.exact_match_by_length.reset()
        m.token_accuracy_by_length.reset()

    def _log_samples(self, stage: str) -> None:
        """A markdown table of source / reference / output, as TensorBoard text."""
        if not self._samples or not isinstance(self.logger, TensorBoardLogger):
            return
        show = self._show()
        rows = ["| source | reference | output | correct |", "|---|---|---|---|"]
        s = self._samples
        for src, tgt, out in zip(s["src"], s["tgt"], s["out"], strict=True):
            ok = bool(((out == tgt) | (tgt == self.pad_id)).all())
            rows.append(f"| {show(src)} | {show(tgt)} | {show(out)} | {'yes' if ok else 'no'} |")
        # the step Lightning logs this epoch's scalars at (`global_step` already counts the epoch's last batch)
        step = logging_step(self.trainer)
        self.logger.experiment.add_text(f"{stage}/samples", "\n".join(rows), step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Fit a checkpoint's learned positional table to this run's data (sinusoidal tables are rebuilt)."""
        super().on_load_checkpoint(checkpoint)  # refuses non-finite weights
        state, per_length = checkpoint["state_dict"], self.sequences_per_position_table
        short = cut_positional_tables(state, per_length * self.max_len)
        if short:
            saved = state[short[0]].shape[0] // per_length
            raise ConfigError(
                f"the checkpoint's learned positional table holds {saved} positions but the data needs "
                f"{self.max_len}: shorten data.*_lengths to at most {saved - 1}, or train with longer ones"
            )


class Transformer(TranslationModel):
    """Transformer encoder-decoder (Vaswani et al. 2017) on SDPA; its sizes are `transformer.*`."""

    def __init__(self, transformer: TransformerConfig = TransformerConfig(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        config = network_config(TransformerConfig, transformer)
        self.net = TransformerNetwork(config, self.vocab_size, self.max_len, self.pad_id)


class DecoderOnly(TranslationModel):
    """Decoder-only Transformer over `source <BOS> target`, causal or a prefix LM, trained on the target tokens only;
    its sizes are `decoder.*`."""

    sequences_per_position_table = 2  # a source and a target

    def __init__(self, decoder: DecoderOnlyConfig = DecoderOnlyConfig(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        config = network_config(DecoderOnlyConfig, decoder)
        self.net = DecoderOnlyNetwork(config, self.vocab_size, self.max_len, self.pad_id)


class Seq2Seq(TranslationModel):
    """RNN encoder-decoder whose only view of the source is the final context vector (Cho et al. 2014)."""

    def __init__(self, rnn: Seq2SeqConfig = Seq2SeqConfig(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.net = Seq2SeqNetwork(network_config(Seq2SeqConfig, rnn), self.vocab_size, self.max_len, self.pad_id)


class Seq2SeqAttention(TranslationModel):
    """RNN encoder-decoder with attention: additive (Bahdanau et al. 2015) or Luong et al.'s dot / general."""

    def __init__(
        self, rnn: Seq2SeqConfig = Seq2SeqConfig(), attention: AttentionConfig = AttentionConfig(), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        rnn, attention = network_config(Seq2SeqConfig, rnn), network_config(AttentionConfig, attention)
        self.net = Seq2SeqAttentionNetwork(rnn, self.vocab_size, self.max_len, self.pad_id, attention)
