"""Everything that scores a model: the GENESIS paper's metrics and their evaluators.

    segmentation  foreground ARI, ARI, SC and mSC, per image and streamed over a split
    fid           Fréchet Inception Distance (the 2015 Inception graph)
    probes        the ShapeStacks probes (GENESIS Table 1)
    forward       the one evaluation forward pass every metric above streams through
    suite         the evaluators (big_vision's interface: run(model, dataset) ->
                  {name: value}), their registry, Options and the printed table

`genesis_tf.evaluate` (the binary), the demo and benchmarks/learning_curve.py call the suite.
This package imports no TensorFlow itself, so binaries can check flags before loading it.
"""
from genesis_tf.metrics.segmentation import (
    adjusted_rand_index,
    foreground_ari,
    predicted_segmentation,
    segmentation_covering,
)

__all__ = ["adjusted_rand_index", "foreground_ari", "predicted_segmentation",
           "segmentation_covering"]
