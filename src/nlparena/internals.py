"""Private names of other libraries that nlparena still depends on, each with why there is no public way; a test per
name (tests/test_refusals.py) fails loudly when a library renames one. Imports nothing of ours."""

from __future__ import annotations

# -- LightningCLI hooks that NlpArenaCLI overrides (cli/lightning.py) ------------------------------------------------
LIGHTNING_CLI_HOOKS = {
    # LightningCLI merges a checkpoint's hyperparameters over the config silently, between parsing and
    # `before_instantiate_classes`, and no public hook runs in its place
    "_parse_ckpt_path": "read --ckpt_path and merge only what the config left at its defaults",
    # the Trainer's fit/validate/test/predict call is made here; the public `before_<subcommand>` hooks cannot wrap it
    # to hold back the start-up lines and remove a run folder left by a run that failed while it was set up
    "_run_subcommand": "check the run, then run it with the start-up lines held back",
}
