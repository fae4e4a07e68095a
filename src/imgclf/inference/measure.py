"""Inference figures of a model on this machine: batch-1 latency (median, p95), images/s at batch 32, peak memory.

`figures` times any forward function (uint8 images -> probabilities): each model stage's Keras classifier in
its own process (imgclf.inference.classifier.measure), and every exported file in a child process of its own
(`in_child`, running `python -m imgclf.inference.measure`) that loads only that file's runtime, so the peak
memory it reports is the runtime's and the model's, not the TensorFlow of the process that made the export.
Run-specific figures: MLflow metrics and reports, never DVC outputs. This module imports numpy only.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf.inference import child

LATENCY_CALLS = 30  # batch-1 calls whose median is the latency (fewer within LATENCY_BUDGET_S)
MIN_LATENCY_CALLS = 5
LATENCY_BUDGET_S = 1.0
THROUGHPUT_BATCH = 32
THROUGHPUT_CALLS = 8  # (fewer within THROUGHPUT_BUDGET_S)
THROUGHPUT_BUDGET_S = 1.0
# An export's figures: more batch-1 calls, so that the p95 means something.
EXPORT_LATENCY_CALLS, EXPORT_LATENCY_BUDGET_S = 100, 3.0
CHILD_TIMEOUT_S = 1800

Forward = Callable[[np.ndarray], np.ndarray]


def figures(forward: Forward, shape: tuple[int, int, int], seed: int = 0, latency_calls: int = LATENCY_CALLS,
            latency_budget_s: float = LATENCY_BUDGET_S) -> dict[str, float]:
    """Median and p95 batch-1 latency (ms) and images/s at batch 32 of `forward` on random uint8 images.

    Time-boxed, so a big model costs seconds, not minutes: after one warm-up call of each batch size
    (tracing, allocation), up to `latency_calls` batch-1 calls within `latency_budget_s` (at least
    MIN_LATENCY_CALLS), then up to THROUGHPUT_CALLS batch-32 calls within THROUGHPUT_BUDGET_S (at least one).
    """
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 256, size=(THROUGHPUT_BATCH, *shape), dtype=np.uint8)
    single = batch[:1]
    forward(single)  # warm-up
    forward(batch)
    latencies = timed_calls(lambda: forward(single), latency_calls, MIN_LATENCY_CALLS, latency_budget_s)
    throughput = timed_calls(lambda: forward(batch), THROUGHPUT_CALLS, 1, THROUGHPUT_BUDGET_S)
    return {
        "latency_ms_batch1": float(np.median(latencies) * 1000.0),
        "latency_ms_batch1_p95": float(np.percentile(latencies, 95) * 1000.0),
        "images_per_s_batch32": THROUGHPUT_BATCH * len(throughput) / sum(throughput),
    }


def timed_calls(call: Callable[[], object], most: int, least: int, budget_s: float,
                clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each call: `most` calls, or fewer (but `least`): past `least`, a call starts only
    if it would end within `budget_s`, judged by the calls' mean so far (a slow model's batch gets one call, not
    a second that ends far past the budget)."""
    seconds: list[float] = []
    while len(seconds) < most:
        if seconds and len(seconds) >= least and sum(seconds) + sum(seconds) / len(seconds) > budget_s:
            break
        started = clock()
        call()
        seconds.append(clock() - started)
    return seconds


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB: /proc's VmHWM (reset by exec, unlike getrusage's
    ru_maxrss, which keeps the parent's peak across fork and exec), else ru_maxrss (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def in_child(model: Path, images: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """(probabilities of `images`, figures + peak_rss_mb) from a child process that loads only `model`'s runtime.

    The images go through the model at batch THROUGHPUT_BATCH, in order; a runtime's failure is a
    child.ChildFailed (a RuntimeError) carrying the child's last line."""
    def read(answer: Path) -> tuple[np.ndarray, dict[str, float]]:
        with np.load(answer) as found:
            return found["probabilities"], json.loads(str(found["figures"]))

    return child.run("imgclf.inference.measure", images, "answer.npz", [str(model), str(seed)], read, CHILD_TIMEOUT_S)


def _child(given: Path, answer: Path, model: Path, seed: int) -> None:
    from imgclf.inference import runtimes

    runtime = runtimes.open_file(model, "")
    images = np.load(given)
    scored = [runtime(images[start:start + THROUGHPUT_BATCH]) for start in range(0, len(images), THROUGHPUT_BATCH)]
    probabilities = np.concatenate(scored) if scored else np.zeros((0, runtime.outputs), np.float32)
    found = figures(runtime, tuple(runtime.input_shape[1:]), seed, EXPORT_LATENCY_CALLS, EXPORT_LATENCY_BUDGET_S)
    found["peak_rss_mb"] = peak_rss_mb()
    np.savez(answer, probabilities=probabilities, figures=json.dumps(found))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
