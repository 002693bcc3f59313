"""The one error type for bad user input: the CLI prints it as a single line before training."""


class ConfigError(ValueError):
    """A setting (named in the message) has a value that is not allowed."""
