"""The converter moved to genesis_tf.tools.convert_reference; its names stay importable
here, and `python -m genesis_tf.convert_reference ...` (this package's __main__) runs it.

A package rather than a module file so that git sees genesis_tf/convert_reference.py as
moved to tools/ and follows its history.
"""
from genesis_tf.tools.convert_reference import *  # noqa: F403
