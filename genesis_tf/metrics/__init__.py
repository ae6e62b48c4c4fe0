"""Segmentation metrics of the GENESIS paper (§4.2, appendix C)."""
from genesis_tf.metrics.segmentation import (
    adjusted_rand_index,
    foreground_ari,
    segmentation_covering,
)

__all__ = ["adjusted_rand_index", "foreground_ari", "segmentation_covering"]
