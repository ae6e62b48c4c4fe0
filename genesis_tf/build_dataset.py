"""`python -m genesis_tf.build_dataset build ...` (BUILD.md's and the error messages' form)
runs genesis_tf.tools.build_dataset, where the command lives."""
from genesis_tf.tools.build_dataset import *  # noqa: F403  (its names, for older imports)
from genesis_tf.tools.build_dataset import run

if __name__ == "__main__":
    run()
