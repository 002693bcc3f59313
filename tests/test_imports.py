"""What `nlparena fit --help` imports: of the heavy packages, only those that `import lightning.pytorch` imports
already, and TensorBoard, whose `SummaryWriter` jsonargparse imports to list the TensorBoard logger's arguments (it
runs in a new interpreter: which modules a fresh process loads is the point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# packages that cost a start-up time of their own and that a command which trains nothing does not need
HEAVY = ("tensorboard", "google.protobuf", "matplotlib", "scipy", "sympy", "transformers", "tokenizers", "sacrebleu")
HEAVY += ("optuna", "pandas", "sklearn", "PIL", "submitit")

HELP = """
import contextlib, io, json, sys
from nlparena.__main__ import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["fit", "--help"])
print(json.dumps(sorted(sys.modules)))
"""
LIGHTNING = "import json, sys, lightning.pytorch; print(json.dumps(sorted(sys.modules)))"


def modules_after(code: str) -> set[str]:
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name in HEAVY or name.startswith(tuple(f"{package}." for package in HEAVY))}


# what the logger's help brings: TensorBoard, and the protobuf runtime its records are written with
LOGGER_HELP = ("tensorboard", "google.protobuf")


def test_fit_help_imports_no_heavy_package_beyond_lightning_and_the_loggers_help():
    lightning, help_ = modules_after(LIGHTNING), modules_after(HELP)
    assert "nlparena.cli.lightning" in help_  # the help was built by our CLI
    beyond = {
        name.split(".")[0] if not name.startswith("google.") else "google.protobuf" for name in heavy(help_ - lightning)
    }
    assert beyond <= set(LOGGER_HELP), f"`nlparena fit --help` imports {sorted(beyond)}, which Lightning alone does not"
    assert {"sacrebleu", "optuna", "submitit", "pandas"}.isdisjoint(help_)  # our own heavy dependencies stay lazy
