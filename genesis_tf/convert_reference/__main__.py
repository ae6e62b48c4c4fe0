"""`python -m genesis_tf.convert_reference ...` (BUILD.md's form): runs
genesis_tf.tools.convert_reference."""
from genesis_tf.tools.convert_reference import run

run()
