"""genesis_tf: GENESIS and its baselines in TensorFlow 2 / Keras 3 / TF-Probability."""

__version__ = "0.1.0"
