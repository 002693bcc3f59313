"""Every test example's source, reference, output and whether it is right, as `test_outputs.csv` in the run folder:
what a user reads to see where a model fails, and what `nlparena compare` resamples to tell a real gap from noise
(the paired bootstrap over test examples). A translation model tested on data whose vocabulary detokenizes (a
tokenizer of the user's text) also gets sacreBLEU's corpus BLEU and chrF of those outputs, with their signatures
in `sacrebleu.json`: scores of detokenized text are the ones that compare with published results."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

FILE_NAME = "test_outputs.csv"
COLUMNS = ("index", "source", "reference", "output", "correct")
SACREBLEU_FILE = "sacrebleu.json"  # each score of `sacrebleu_scores` with its signature


def sacrebleu_scores(outputs: list[str], references: list[str]) -> dict[str, dict[str, Any]]:
    """sacreBLEU's corpus BLEU and chrF (default settings, as `sacrebleu.corpus_bleu` / `corpus_chrf`) of
    detokenized `outputs` against one reference each: `{"test/sacrebleu": {"score", "signature"}, "test/chrf": ...}`."""
    from sacrebleu.metrics import BLEU, CHRF  # here: 0.1 s that only a test of detokenized text needs

    scores = {}
    for name, metric in (("test/sacrebleu", BLEU()), ("test/chrf", CHRF())):
        result = metric.corpus_score(outputs, [references])
        # `BLEU|nrefs:1|case:mixed|...|version:2.6.0`: the metric's name and every setting that changes its value
        scores[name] = {"score": result.score, "signature": f"{result.name}|{metric.get_signature()}"}
    return scores


def scores_detokenized_text(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """A translation model whose data's vocabulary detokenizes: its outputs are text that sacreBLEU can score."""
    vocab = getattr(trainer.datamodule, "vocab", None)
    return getattr(pl_module, "family", None) == "translation" and bool(getattr(vocab, "detokenizes", False))


class TestOutputs(Callback):
    """Writes `test_outputs.csv` (index in the test split, source, reference, output, correct 0/1) at the end of
    each test, from what the model's `test_step` returns: a dict of per-example lists `source`, `reference`,
    `output`, `correct` (translation: the decoded sentence; classification: the predicted class name). A model whose
    test step returns nothing of the kind (pre-training) gets no file.

    Under DDP each process holds its share of the split (every world-size-th example, unpadded, see
    `ShardedBatches`); the rows are gathered to process 0 and written in the split's order, so 1 and N processes
    write the same file.
    """

    __test__ = False  # a callback, not a pytest test class

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, int]] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, dict) and "output" in outputs:
            columns = [outputs[key] for key in COLUMNS[1:]]
            self.rows += [(s, r, o, int(c)) for s, r, o, c in zip(*columns, strict=True)]

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        indexed = list(zip(self._indices(trainer), self.rows, strict=False))
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            shares: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(shares, indexed)  # every process takes part, or the others wait forever
            indexed = [row for share in shares for row in share]  # every process holds every row now
        indexed.sort(key=lambda item: item[0])
        log_dir = trainer.log_dir  # on every process: Lightning broadcasts it from process 0
        if indexed and scores_detokenized_text(trainer, pl_module):
            self.log_sacrebleu(trainer, pl_module, [row for _, row in indexed], log_dir)
        if not indexed or not trainer.is_global_zero or log_dir is None:
            return
        path = Path(log_dir, FILE_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows((index, *row) for index, row in indexed)

    def log_sacrebleu(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, rows: list[tuple], log_dir: str | None
    ) -> None:
        """Log `sacrebleu_scores` of the whole split's outputs (computed by process 0, sent to the others: every
        process logs the same value) and write them with their signatures to the run folder."""
        scores = None
        if trainer.is_global_zero:
            scores = sacrebleu_scores([output for _, _, output, _ in rows], [reference for _, reference, _, _ in rows])
        scores = trainer.strategy.broadcast(scores, src=0)
        for name, entry in scores.items():
            # float64: the score as sacreBLEU computed it; equal on every process (a mean of equal values)
            pl_module.log(name, torch.tensor(entry["score"], dtype=torch.float64), sync_dist=True)
        if trainer.is_global_zero and log_dir is not None:
            path = Path(log_dir, SACREBLEU_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(scores, indent=2) + "\n")

    def _indices(self, trainer: pl.Trainer) -> list[int]:
        """Each of this process's rows' position in the test split."""
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        share = getattr(getattr(loader, "sampler", None), "unpadded_share", None)
        indices = list(share()) if callable(share) else []
        if len(indices) != len(self.rows):  # another sampler: the order it yielded, on one process
            indices = list(range(len(self.rows)))
        return indices
