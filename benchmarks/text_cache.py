"""First-run tokenization and second-run start of `TextPair` on a large generated TSV; the tokenizer's own speed.

Generates (once per --rows and --seed) a TSV of synthetic parallel text: a source language of a few thousand words
with Zipf frequencies, sentences of 8-30 words, and a target that is a word-by-word translation into a second lexicon
with some words swapped and a particle added, written a chunk at a time. Then, each in a fresh child process so that
its peak RSS (VmHWM, read by the child) is its own:

- first: `TextPair` on the file with an empty cache (file hash, tokenizer training on its first rows, every split
  tokenized into the cache), `setup("fit")`, the first batch, then --steps training steps of a tiny Transformer
  through `Trainer.fit`. Tokenization throughput = rows of the file / seconds from constructing the data module to
  its return.
- second: the same with the cache filled (--starts times a round). Times from the parent's launch of the process,
  so they include the interpreter's start and the imports: "imports" (torch, Lightning, nlparena), "data module
  ready" (constructed and `setup("fit")` returned), "first batch" (the first batch of `train_dataloader()`); the
  same less the imports, and less the floor: the wall time of `python -c "import lightning"`, run before each
  second run (the project's start-time bars are counted beyond that floor, which no nlparena code can shorten).
- tokenizer: the tokenizer that the first run trained, `Tokenizer.encode_batch` over the same file's sources and
  targets, read in chunks of the same number of rows as the cache writer's, ids taken out, nothing kept: the speed
  of the tokenizer itself, without our splits, checks and cache.

Each of --rounds rounds runs the three in turn (a first run on an emptied cache each time), so that the machine's
load weighs on each alike. Prints medians, the peak RSS and start times against the 2 GiB and 5 s limits, and the
first run's rows/s as a ratio of the tokenizer's. The TSV stays in --dir for later runs; the cache is removed
unless --keep.

    python benchmarks/text_cache.py --rows 10000000 --dir /tmp/textbench [--rounds 3] [--starts 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GENERATOR_VERSION = 1  # raised when the generated text changes, so that an older file is written again
CHUNK = 50_000  # rows generated and written at a time
RSS_LIMIT_GIB = 2.0
START_LIMIT_S = 5.0
MIB = 2**20
BANDS = (60, 900, 3000)  # lexicon ranks from which words have two, three, four syllables


# -- the generated corpus -----------------------------------------------------------------------------------------
def lexicon(rng, size: int, onsets: str, vowels: str, codas: tuple[str, ...]) -> list[str]:
    """`size` distinct words; frequent (low) ranks get one syllable, rarer ones two, three, four, as in real text."""
    syllables = [o + v + c for o in onsets for v in vowels for c in codas]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        count = 1 + sum(len(words) >= edge for edge in BANDS)
        word = "".join(syllables[i] for i in rng.integers(len(syllables), size=count))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def generate(path: Path, rows: int, seed: int, vocabulary: int = 4000) -> None:
    """Write `rows` source/target pairs to `path`, CHUNK rows at a time (never the whole file in memory)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    source_words = lexicon(rng, vocabulary, "bdfgklmnprstv", "aeiou", ("",))
    target_words = lexicon(rng, vocabulary, "hjkmnqswxz", "aeiouy", ("", "", "", "n"))
    # source word i -> target word translation[i], of about the same rank: the target's lengths follow the source's
    bands = [0, *(edge for edge in BANDS if edge < vocabulary), vocabulary]
    translation = np.concatenate([lo + rng.permutation(hi - lo) for lo, hi in itertools.pairwise(bands)])
    particle = target_words[vocabulary // 2]
    zipf = 1.0 / (np.arange(vocabulary) + 2.7)
    zipf /= zipf.sum()
    longest = 30
    temporary = path.with_suffix(".partial")
    with temporary.open("w", encoding="utf-8") as file:
        file.write("source\ttarget\n")
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            lengths = np.minimum(8 + rng.geometric(1 / 5, size=n) - 1, longest)
            ids = rng.choice(vocabulary, size=(n, longest), p=zipf)
            # the target: each word translated, and each pair of words (2k, 2k + 1) swapped when the first is odd
            out = translation[ids]
            swap = np.zeros_like(ids, dtype=bool)
            swap[:, 0::2] = ids[:, 0::2] % 2 == 1
            pairs = out.reshape(n, longest // 2, 2)
            flipped = np.where(swap[:, 0::2, None], pairs[:, :, ::-1], pairs).reshape(n, longest)
            lines = []
            for row, out_row, length in zip(ids.tolist(), flipped.tolist(), lengths.tolist(), strict=True):
                # a swap across the sentence's end would pull in a word past it: keep the last word in place then
                target = out_row[:length] if length % 2 == 0 else [*out_row[: length - 1], translation[row[length - 1]]]
                words = [target_words[i] for i in target]
                if length > 15:
                    words.append(particle)
                lines.append(" ".join(source_words[i] for i in row[:length]) + "\t" + " ".join(words) + "\n")
            file.write("".join(lines))
    temporary.rename(path)


def corpus(folder: Path, rows: int, seed: int) -> Path:
    """The TSV of `rows` pairs from `seed` in `folder`, generated unless the one there was made the same way."""
    path = folder / f"pairs-{rows}-{seed}.tsv"
    stamp = path.with_suffix(".json")
    wanted = {"rows": rows, "seed": seed, "version": GENERATOR_VERSION}
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == {**wanted, "bytes": path.stat().st_size}:
        print(f"reusing {path} ({path.stat().st_size / 2**30:.2f} GiB)", flush=True)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    generate(path, rows, seed)
    stamp.write_text(json.dumps({**wanted, "bytes": path.stat().st_size}))
    seconds = time.perf_counter() - start
    print(f"wrote {path}: {rows:,} rows, {path.stat().st_size / 2**30:.2f} GiB in {seconds:.0f} s", flush=True)
    return path


# -- what a child process measures -------------------------------------------------------------------------------
def memory() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB
    return fields


class Stages:
    """Seconds since the parent launched this process, and the RSS, at the end of each named stage."""

    def __init__(self, launched: float) -> None:
        self.launched, self.marks = launched, {}

    def mark(self, name: str) -> None:
        self.marks[name] = {"at": time.monotonic() - self.launched, **memory()}


def data_module(file: Path, cache: Path, stages: Stages):
    """TextPair on `file`, set up; the time spent hashing, training the tokenizer and writing the cache, by wrapping
    the methods that do each (when they run: a filled cache needs none but the hash)."""
    from nlparena.data import TextPair, text_data, text_splits

    spent: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.monotonic() - start

        return wrapper

    text_splits.file_hash = timed("file hash", text_splits.file_hash)
    text_data.TextTokenizer.train = timed("tokenizer training", text_data.TextTokenizer.train)
    text_data.TextDataModule.write_cache = timed("tokenizing into the cache", text_data.TextDataModule.write_cache)
    start = time.monotonic()
    dm = TextPair(train_file=str(file), cache_dir=str(cache), batch_size=64)
    built = time.monotonic() - start
    stages.mark("constructed")
    dm.setup("fit")
    stages.mark("data module ready")
    return dm, built, spent


def train_steps(dm, steps: int, stages: Stages) -> None:
    import lightning.pytorch as pl
    import torch

    from nlparena.models import Transformer
    from nlparena.networks.transformer import TransformerConfig

    torch.manual_seed(0)
    tiny = TransformerConfig(d_model=64, n_heads=4, d_ff=128, num_encoder_layers=1, num_decoder_layers=1)
    model = Transformer(transformer=tiny, vocab_size=dm.vocab_size, max_len=dm.max_length)
    model.configure_optimizers = lambda: torch.optim.AdamW(model.parameters(), lr=1e-3)  # the CLI adds it otherwise

    class FirstBatch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                stages.mark("fit: first training batch")

    trainer = pl.Trainer(
        callbacks=[FirstBatch()],
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    stages.mark(f"fit: {steps} training steps")


def child_run(args: argparse.Namespace) -> dict:
    stages = Stages(args.launched)
    stages.mark("interpreter")
    import lightning.pytorch  # noqa: F401  (what a run imports before its data)
    import torch  # noqa: F401

    import nlparena.data
    import nlparena.models  # noqa: F401

    stages.mark("imports")
    dm, built, spent = data_module(Path(args.file), Path(args.cache), stages)
    next(iter(dm.train_dataloader()))
    stages.mark("first batch")
    if args.steps:
        train_steps(dm, args.steps, stages)
    tokenizer = next((dm.cache_root / "tokenizers").iterdir()) / "tokenizer.json"
    return {
        "stages": stages.marks,
        "built": built,
        "spent": spent,
        "kept": {split: len(batches) for split, batches in dm.splits.items()},
        "vocab": dm.vocab_size,
        "tokenizer": str(tokenizer),
        "tokens": int(dm.splits["train"].columns["src"].offsets[-1] + dm.splits["train"].columns["tgt"].offsets[-1]),
    }


def child_tokenizer(args: argparse.Namespace) -> dict:
    """The tokenizer's own speed: encode_batch over the file's sources and targets, CHUNK_ROWS rows at a time."""
    from tokenizers import Tokenizer

    from nlparena.data.text_data import CHUNK_ROWS

    tokenizer = Tokenizer.from_file(args.tokenizer)
    start, rows, tokens = time.monotonic(), 0, 0

    def encode(lines: list[bytes]) -> int:
        fields = [line.decode("utf-8").rstrip("\r\n").split("\t") for line in lines]
        count = 0
        for column in (0, 1):
            encodings = tokenizer.encode_batch([f[column] for f in fields], add_special_tokens=False)
            count += sum(len(e.ids) for e in encodings)
        return count

    with open(args.file, "rb") as file:
        file.readline()  # the header
        chunk: list[bytes] = []
        for line in file:
            chunk.append(line)
            if len(chunk) == CHUNK_ROWS:
                tokens += encode(chunk)
                rows, chunk = rows + len(chunk), []
        if chunk:
            tokens += encode(chunk)
            rows += len(chunk)
    seconds = time.monotonic() - start
    return {"rows": rows, "seconds": seconds, "tokens": tokens, **memory()}


def child(args: argparse.Namespace) -> None:
    result = child_tokenizer(args) if args.mode == "tokenizer" else child_run(args)
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent ----------------------------------------------------------------------------------------------------
def launch(mode: str, log: Path, **options) -> dict:
    """Run this script as a child in `mode`, its stderr (progress bar, Lightning's notes) appended to `log`; its
    result."""
    argv = [sys.executable, __file__, "--child", mode]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    with log.open("a") as errors:
        errors.write(f"\n$ {' '.join(argv)}\n")
        errors.flush()
        argv += ["--launched", repr(time.monotonic())]  # CLOCK_MONOTONIC: the same clock in every process
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
    if done.returncode:
        sys.exit(f"the {mode} run failed (exit {done.returncode}); its errors are at the end of {log}")
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def floor() -> float:
    """Seconds from launch to exit of `python -c "import lightning"`: what any Lightning command pays first."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import lightning"], check=True)
    return time.monotonic() - start


def load() -> str:
    """The load average over the last minute and the cores, for the record."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", default="/tmp/textbench", help="the generated TSV and the cache go here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of: first run, second runs, tokenizer alone")
    parser.add_argument("--starts", type=int, default=3, help="second runs (starts from the cache) per round")
    parser.add_argument("--steps", type=int, default=20, help="training steps after the data module is ready")
    parser.add_argument("--keep", action="store_true", help="keep the last cache (the TSV is always kept)")
    parser.add_argument("--child", choices=("first", "second", "tokenizer"), help=argparse.SUPPRESS)
    for hidden in ("file", "cache", "tokenizer"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return

    folder = Path(args.dir)
    file = corpus(folder, args.rows, args.seed)
    cache, log = folder / "cache", folder / "children.log"
    log.unlink(missing_ok=True)
    runs: dict[str, list] = {"first": [], "second": [], "tokenizer": [], "floor": []}
    loads = []
    for round_ in range(args.rounds):  # the three alternate, so that the machine's load weighs on each alike
        shutil.rmtree(cache, ignore_errors=True)
        loads.append(os.getloadavg()[0])
        print(f"round {round_ + 1}: first run ({load()})", flush=True)
        first = launch("first", log, file=file, cache=cache, steps=args.steps)
        runs["first"].append(first)
        for _ in range(args.starts):
            runs["floor"].append(floor())
            runs["second"].append(launch("second", log, file=file, cache=cache, steps=args.steps))
        print(f"round {round_ + 1}: tokenizer alone ({load()})", flush=True)
        runs["tokenizer"].append(launch("tokenizer", log, file=file, tokenizer=first["tokenizer"]))
    loads.append(os.getloadavg()[0])
    cache_bytes = sum(path.stat().st_size for path in cache.rglob("*") if path.is_file())
    if not args.keep:
        shutil.rmtree(cache)
    (folder / "results.json").write_text(json.dumps(runs, indent=1))
    report(args.rows, file, runs, cache_bytes, loads)


def median_of(runs: list[dict], stage: str, key: str = "at") -> float:
    return statistics.median(run["stages"][stage][key] for run in runs)


def peak_gib(run: dict) -> float:
    return max(mark["VmHWM"] for mark in run["stages"].values()) * MIB / 2**30


def report(rows: int, file: Path, runs: dict[str, list[dict]], cache_bytes: int, loads: list[float]) -> None:
    first, second, tokenizer = runs["first"], runs["second"], runs["tokenizer"]
    size = file.stat().st_size / 2**30
    print(
        f"\n{rows:,} rows, {size:.2f} GiB; cache {cache_bytes / 2**30:.2f} GiB; {os.cpu_count()} cores, load average "
        f"(1 min) at each round's start and at the end {', '.join(f'{x:.1f}' for x in loads)}"
    )
    print(f"rows kept per split: {first[0]['kept']}; vocabulary {first[0]['vocab']}; tokens {first[0]['tokens']:,}")
    for name, group in (("first run", first), ("second run", second)):
        print(f"\n{name}, median of {len(group)}: seconds since launch, RSS MiB at the stage's end / peak so far")
        for stage in group[0]["stages"]:
            at, rss, hwm = (median_of(group, stage, key) for key in ("at", "VmRSS", "VmHWM"))
            print(f"  {stage:34s} {at:8.2f} s {rss:7.0f} {hwm:7.0f}")
        for part in group[0]["spent"]:
            print(f"  of which {part:25s} {statistics.median(run['spent'][part] for run in group):8.2f} s")

    ours = statistics.median(rows / run["built"] for run in first)
    tokenizing = statistics.median(rows / run["spent"]["tokenizing into the cache"] for run in first)
    alone = statistics.median(run["rows"] / run["seconds"] for run in tokenizer)
    first_peak, second_peak = max(map(peak_gib, first)), max(map(peak_gib, second))
    imports, ready = median_of(second, "imports"), median_of(second, "data module ready")
    batch = median_of(second, "first batch")
    lightning_floor = statistics.median(runs["floor"])
    print(f"\ntokenizer alone: peak RSS {max(run['VmHWM'] for run in tokenizer):.0f} MiB")
    print(f"\n{'medians':52s} {'value':>10s} {'limit':>7s}")
    table = [
        ("first run: rows/s, construct to return", f"{ours:,.0f}", None),
        ("first run: rows/s while tokenizing into the cache", f"{tokenizing:,.0f}", None),
        ("tokenizer alone (encode_batch): rows/s", f"{alone:,.0f}", None),
        ("first run / tokenizer alone", f"{ours / alone:.3f}", None),
        ("  tokenizing phase / tokenizer alone", f"{tokenizing / alone:.3f}", None),
        ("first run: peak RSS, GiB (the highest)", f"{first_peak:.2f}", (first_peak, RSS_LIMIT_GIB)),
        ("second run: peak RSS, GiB (the highest)", f"{second_peak:.2f}", (second_peak, RSS_LIMIT_GIB)),
        ("second run: imports done, s since launch", f"{imports:.2f}", None),
        ("second run: data module ready, s since launch", f"{ready:.2f}", (ready, START_LIMIT_S)),
        ("second run: first batch, s since launch", f"{batch:.2f}", (batch, START_LIMIT_S)),
        ("second run: data module ready, s after the imports", f"{ready - imports:.2f}", (ready - imports, 5)),
        ("second run: first batch, s after the imports", f"{batch - imports:.2f}", (batch - imports, 5)),
        ('python -c "import lightning", s (the floor)', f"{lightning_floor:.2f}", None),
        ("second run: first batch, s beyond the floor", f"{batch - lightning_floor:.2f}", (batch - lightning_floor, 5)),
    ]
    for name, value, check in table:
        verdict = "" if check is None else f"{check[1]:7.1f}  {'under' if check[0] < check[1] else 'OVER'}"
        print(f"{name:52s} {value:>10s} {verdict}")


if __name__ == "__main__":
    main()
