"""Lines of other libraries that tell an nlparena user nothing they can act on, silenced where they are made: each by
its message (and, for a warning, the module that issues it), never a whole category or a whole logger, so that a
user's own misconfiguration still warns (`log_every_n_steps` larger than an epoch, a `monitor` that is never logged,
...).

What nlparena causes itself is not silenced but avoided: the Trainer is given the model's checkpoints
(`NlpArenaCLI.instantiate_trainer`), so Lightning adds no default ModelCheckpoint that `configure_callbacks` would
then "override", and a test, validate or predict run has no checkpoint callback to restore.
"""

from __future__ import annotations

import logging
import re
import warnings

# Lightning's rank_zero_info lines go to the logger of the module that set `rank_zero_module.log` last (pytorch's,
# imported after fabric's): a filter on each, for the lines it makes
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# adverts that every Trainer prints whatever its settings (Lightning has no switch for them)
ADVERTS = re.compile(r"💡 Tip: .*\[(litlogger|litmodels)\]\(https://pypi\.org/project/(litlogger|litmodels)/\)")
# (message, module that issues it): matched from their start, as `warnings.filterwarnings` does
WARNINGS = (
    # torch deprecates `LeafSpec`, which Lightning's own `_pytree` calls: nothing a user can change
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # `test(ckpt_path="best")` after a fit (as `nlparena compare` does) with the model's two checkpoints: the best one
    # is the first (`ArenaModel.checkpoint_callbacks`), and it is the one tested
    (
        r'`\.(test|validate|predict)\(ckpt_path="best"\)` is called with Trainer configured with multiple '
        r"`ModelCheckpoint` callbacks\. It will use the best checkpoint path from first checkpoint callback",
        r"lightning\.pytorch\.trainer\.connectors\.checkpoint_connector",
    ),
    # the model's best checkpoint (a config's own ModelCheckpoint is replaced by it) in an epoch without validation
    # (`limit_val_batches=0`, `check_val_every_n_epoch`): the fit's summary says that no validation value was logged
    (
        r"`ModelCheckpoint\(monitor='val/[\w/]+'\)` could not find the monitored key in the returned metrics",
        r"lightning\.pytorch\.callbacks\.model_checkpoint",
    ),
    # `fit --ckpt_path` resumes into a new version folder by design: its checkpoints go there, not to the old one's
    (
        r"The dirpath has changed from .* therefore `best_model_score`",
        r"lightning\.pytorch\.callbacks\.model_checkpoint",
    ),
)


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not ADVERTS.search(record.getMessage())


NO_ADVERTS = _NoAdverts()


def silence_foreign_lines() -> None:
    """Install the filters (once; calling again changes nothing)."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if NO_ADVERTS not in logger.filters:
            logger.addFilter(NO_ADVERTS)
    for message, module in WARNINGS:
        # an identical filter is replaced, not added twice
        warnings.filterwarnings("ignore", message=message, module=module + r"\Z")
