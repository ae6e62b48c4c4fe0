"""Keras 3 layers, one per concept of the GENESIS paper. They return tensors only."""
from genesis_tf.layers.broadcast_decoder import BroadcastDecoder
from genesis_tf.layers.component_vae import ComponentEncoder, ComponentVAE
from genesis_tf.layers.gated_conv import GatedConv2D
from genesis_tf.layers.mask_vae import MaskDecoder, MaskEncoder, MaskPosterior
from genesis_tf.layers.priors import AutoregressivePrior, ComponentPrior
from genesis_tf.layers.stick_breaking import StickBreaking

__all__ = [
    "AutoregressivePrior",
    "BroadcastDecoder",
    "ComponentEncoder",
    "ComponentPrior",
    "ComponentVAE",
    "GatedConv2D",
    "MaskDecoder",
    "MaskEncoder",
    "MaskPosterior",
    "StickBreaking",
]
