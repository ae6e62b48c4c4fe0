"""Test-session set-up shared by every test.

TensorFlow fixes its device list at first use, so the two logical CPUs that the
tf.distribute tests need are configured here, before any test touches TensorFlow.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per pool, here and in every process a test starts (they inherit
# the environment): `make test` runs two workers plus their binaries on two cores, and
# oversubscribed thread pools spend CPU spinning. Measured on test_resume_safety.py alone:
# 194 CPU-seconds with TensorFlow's defaults, 168 with one thread (and 18 s less wall).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import tensorflow as tf  # noqa: E402

# Grappler's graph rewrites make up about a fifth of the first call of every traced
# training step (measured: a tiny 2-step train() 18.0 s with them, 14.1 s without), and
# tests trace dozens of them. In-process tests run the graphs unrewritten; the tests that
# start a binary (train, export, demo, evaluate) run with TensorFlow's defaults.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # Already initialised by an earlier import: keep what exists.
    pass

# The longest test files, longest first (module fixtures that run binaries or train).
# pytest-xdist's --dist loadfile hands out files in collection order, and alphabetical
# order put all of tests/training/ last: the two workers then finished minutes apart.
# Starting the long files first lets the short ones fill the gaps at the end.
LONGEST_FIRST = (
    "tests/training/test_resume_safety.py",
    "tests/training/test_binary.py",
    "tests/training/test_loop.py",
    "tests/test_evaluate.py",
    "tests/benchmarks/test_benchmarks.py",
    "tests/training/test_demo.py",
    "tests/training/test_config_mistakes.py",
    "tests/training/test_precision.py",
    "tests/test_packaging.py",
    "tests/export/test_export.py",
    "tests/test_visualise.py",
    "tests/training/test_warm_start.py",
)


def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath)

    def rank(item):
        path = os.path.relpath(str(item.path), root)
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
