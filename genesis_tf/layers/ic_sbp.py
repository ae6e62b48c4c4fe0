r"""GENESIS-V2's instance-colouring stick-breaking process (IC-SBP).

Given a pixel embedding c [B, H, W, D] and one uniform draw u ∈ [0, 1) per pixel (one
draw per forward pass, shared by every step), with scope log s_0 = 0:

for k = 1..K−1:
  1. the seed pixel i_k = argmax over pixels of u·s_{k−1} (no gradient: a choice);
  2. the seed embedding e_k = c[i_k] (gathered *with* gradient into c at that pixel);
  3. α_k = kernel(c, e_k): gaussian exp(−‖c − e_k‖²/σ) (no factor 2), laplacian
     exp(−‖c − e_k‖/σ), epanechnikov relu(1 − ‖c − e_k‖²/σ);
  4. α_k clamped to [0.01, 0.99] with a straight-through gradient (forward clamped,
     backward identity), so no pixel's mask or scope reaches 0 and no gradient is cut;
  5. log m_k = log s_{k−1} + log α_k,  log s_k = log s_{k−1} + log(1 − α_k).
The K-th mask is the remaining scope, log m_K = log s_{K−1}; the K masks sum to 1.

σ = exp(log σ) is learnt; log σ starts at log σ_0 with σ_0 = 1/(K ln 2) (gaussian),
1/(√K ln 2) (laplacian) or 2/K (epanechnikov), K the model's number of slots. The
reference keeps log σ in float64; here it is float32, as all arithmetic with it is.
Everything runs in float32 (the layer's dtype), whatever the model's policy.
"""
import math

import tensorflow as tf

from genesis_tf.layers import tracking

KERNELS = ("gaussian", "laplacian", "epanechnikov")
ALPHA_MIN, ALPHA_MAX = 0.01, 0.99


def initial_sigma(kernel, num_slots):
    """σ_0 of the reference for a model with ``num_slots`` slots."""
    if kernel == "gaussian":
        return 1.0 / (num_slots * math.log(2.0))
    if kernel == "laplacian":
        return 1.0 / (math.sqrt(num_slots) * math.log(2.0))
    if kernel == "epanechnikov":
        return 2.0 / num_slots
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def straight_through_clamp(x, low, high):
    """clip(x) forward, identity backward."""
    return x + tf.stop_gradient(tf.clip_by_value(x, low, high) - x)


class InstanceColouringSBP(tracking.Layer):
    """(embedding [B, H, W, D], uniform [B, H, W], K) -> (log masks [B, K, H, W, 1],
    seed pixel indices [B, K−1] into the row-major flattened H·W)."""

    def __init__(self, num_slots=7, kernel="gaussian", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sigma_0 = initial_sigma(kernel, num_slots)  # also checks the kernel's name
        self.num_slots = num_slots
        self.kernel = kernel

    def build(self, input_shape=None):
        self.log_sigma = self.add_weight(
            shape=(), initializer=tf.constant_initializer(math.log(self.sigma_0)),
            name="log_sigma")

    def call(self, embedding, uniform, num_slots=None):
        if not self.built:
            self.build()
        num_slots = num_slots or self.num_slots
        c = tf.cast(embedding, tf.float32)
        batch, height, width = tf.shape(c)[0], tf.shape(c)[1], tf.shape(c)[2]
        flat = tf.reshape(c, [batch, -1, c.shape[-1]])  # [B, H·W, D]
        u = tf.reshape(tf.cast(uniform, tf.float32), [batch, -1])  # [B, H·W]
        sigma = tf.exp(tf.cast(self.log_sigma, tf.float32))
        log_scope = tf.zeros_like(u)
        log_masks, seeds = [], []
        for _ in range(num_slots - 1):
            seed = tf.argmax(tf.stop_gradient(u * tf.exp(log_scope)), axis=1,
                             output_type=tf.int32)  # [B]
            seed_embedding = tf.gather(flat, seed[:, None], batch_dims=1)  # [B, 1, D]
            alpha = straight_through_clamp(self._similarity(flat, seed_embedding, sigma),
                                           ALPHA_MIN, ALPHA_MAX)
            log_masks.append(log_scope + tf.math.log(alpha))
            log_scope = log_scope + tf.math.log(1.0 - alpha)
            seeds.append(seed)
        log_masks.append(log_scope)
        log_masks = tf.reshape(tf.stack(log_masks, axis=1), [batch, num_slots, height, width, 1])
        return log_masks, tf.stack(seeds, axis=1)

    def _similarity(self, flat, seed_embedding, sigma):
        """α [B, H·W] of every pixel's embedding with the seed's."""
        squared = tf.reduce_sum(tf.square(flat - seed_embedding), axis=-1)
        if self.kernel == "gaussian":
            return tf.exp(-squared / sigma)
        if self.kernel == "laplacian":
            floored = squared + tf.stop_gradient(tf.maximum(squared, 1e-10) - squared)
            return tf.exp(-tf.sqrt(floored) / sigma)
        return tf.nn.relu(1.0 - squared / sigma)

    def get_config(self):
        return {**super().get_config(), "num_slots": self.num_slots, "kernel": self.kernel}
