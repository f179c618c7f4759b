"""What the benchmarks do with their figures: the load average taken beside them, printed and written as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, to print beside figures measured on a shared machine."""
    return [round(x, 2) for x in os.getloadavg()]


def publish(figures: dict, json_path: Path | None) -> dict:
    """Print the figures as JSON and, when asked, write them to `json_path`; returns them."""
    print(json.dumps(figures, indent=2))
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
