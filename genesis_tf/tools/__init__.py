"""The secondary command-line binaries (as big_vision's tools/): each module is run with
`python -m genesis_tf.tools.<name>` or its console script.

    build_dataset      genesis-build-dataset: `tfds build` for the project's datasets
    convert_reference  genesis-convert-reference: the authors' PyTorch checkpoints as runs
    write_weights      genesis-write-weights: a run's weights in one small file

`python -m genesis_tf.build_dataset` and `python -m genesis_tf.convert_reference` (the
commands BUILD.md gave first) forward here.
"""
