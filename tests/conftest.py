"""Test-session set-up shared by every test.

TensorFlow fixes its device list at first use, so the two logical CPUs that the
tf.distribute tests need are configured here, before any test touches TensorFlow.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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

# The binaries the tests start (they inherit this environment) get one TensorFlow thread
# per pool: `make test` runs two workers plus dozens of binaries on two cores, and
# oversubscribed thread pools spend CPU spinning (test_resume_safety.py alone: 194
# CPU-seconds with TensorFlow's defaults, 168 with one thread, and 18 s less wall). This
# process keeps its two threads: its context, created here, has read the variables already.
tf.config.list_logical_devices("CPU")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

# Scheduling: `--dist loadfile` keeps each file in one worker. pytest-xdist 3.8 hands the
# files out largest (most tests) first, whatever the collection order (its
# --loadscope-reorder default), and measured that way both workers end within a second of
# each other (929 s and 930 s), so the order is left to it.
