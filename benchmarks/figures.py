"""Every benchmark reports its figures through `figure()`: printed for the reader, and appended as one JSON line to
the file named by ``BENCH_FIGURES`` when set, which is how `make bench-compare` reads both sides of a comparison."""

import json
import os


def figure(name: str, value: float, unit: str, *, better: str = "lower") -> float:
    """Record one figure (``better``: "lower" for times and CPU, "higher" for rates and speed-ups)."""
    path = os.environ.get("BENCH_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "value": value, "unit": unit, "better": better}) + "\n")
    return value
