"""What the keys of a compare config hold and how a value is given to `nlparena fit`."""

from __future__ import annotations

import json
import re
from typing import Any

CONFIG_KEY = re.compile(r"(--)?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # optimizer.init_args.lr


def cli_value(value: Any) -> str:
    """A YAML value as `nlparena fit` takes it after `--key=`: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
