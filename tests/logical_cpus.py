"""Run pipeline stages with this machine's CPU split into N logical TensorFlow devices.

    python tests/logical_cpus.py N STAGE [STAGE ...]

What a test (or a CPU-only user trying `train.distribute: mirrored`) needs: the devices must be
configured before TensorFlow initialises, so before any stage module is imported. Each stage runs
as `python -m stages.<stage>` would; the first failing one ends the run with its exit code.
"""

from __future__ import annotations

import runpy
import sys

import tensorflow as tf


def main(argv: list[str]) -> int:
    count, stages = int(argv[0]), argv[1:]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    for stage in stages:
        try:
            runpy.run_module(f"stages.{stage}", run_name="__main__", alter_sys=True)
        except SystemExit as ended:
            if ended.code not in (None, 0):
                return int(ended.code) if isinstance(ended.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
