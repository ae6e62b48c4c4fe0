"""GENESIS-V2's posterior q(z_k | x): a masked mean of pixel features, then an MLP.

For each slot k, the feature map f [B, H, W, C] is pooled under the IC-SBP mask m_k:
f_k = Σ_hw m_k f / (Σ_hw m_k + 1e-5) (gradients flow through m_k). The MLP is
LayerNorm(C) -> Dense(C) -> ReLU -> Dense(C); its output splits into the mean (first C/2)
and σ = softplus(second half + 0.5) + 1e-8. C = 2·latent size (128 in the reference).
Pooling and the distribution parameters are float32.
"""
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.initializers import TorchDense
from genesis_tf.layers.torch_norms import LayerNorm

POOL_EPSILON = 1e-5


def masked_mean(features, log_masks):
    """features [B, H, W, C], log masks [B, K, H, W, 1] -> [B, K, C] in float32."""
    masks = ops.exp(ops.cast(log_masks, "float32"))[..., 0]  # [B, K, H, W]
    total = ops.einsum("bkhw,bhwc->bkc", masks, ops.cast(features, "float32"))
    return total / (ops.sum(masks, axis=(2, 3))[..., None] + POOL_EPSILON)


class MaskedMeanPosterior(tracking.Layer):
    """(features [B, H, W, 2D], log masks [B, K, H, W, 1]) -> (mean, scale), each
    [B, K, D] in float32."""

    def __init__(self, latent_size=64, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.norm = LayerNorm(epsilon=1e-5, name="norm")
        self.hidden = TorchDense(2 * latent_size, activation="relu", name="hidden")
        self.head = TorchDense(2 * latent_size, name="head")

    def call(self, features, log_masks):
        pooled = masked_mean(features, log_masks)
        raw = ops.cast(self.head(self.hidden(self.norm(pooled))), "float32")
        mean, pre_scale = ops.split(raw, 2, axis=-1)
        return mean, ops.softplus(pre_scale + 0.5) + 1e-8

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size}
