"""The single-run commands: `nlparena fit|validate|test|predict` (LightningCLI), `translate` and `schedule`."""

from nlparena.cli.lightning import NlpArenaCLI

__all__ = ["NlpArenaCLI"]
