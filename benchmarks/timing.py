"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import statistics
import time


def sample_seconds(fn, repeats: int) -> list[float]:
    """The wall time of each of `repeats` calls of fn, in order."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def median_seconds(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(sample_seconds(fn, repeats))


def interleaved_medians(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds of each function, timed in rounds (A, B, C, A, B, C, ...) so that a slow
    spell of the shared machine hits every function alike instead of whichever ran then."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
