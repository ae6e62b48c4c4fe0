"""TF-Probability distributions of GENESIS, built from layer outputs.

Shapes below: B images, K slots, H×W×C pixels, D latent dimensions.

* Likelihood p(x | z) = Π_{h,w,c} Σ_k m_k(h,w) N(x_{hwc}; μ_k(h,w,c), σ_x):
  ``MixtureSameFamily`` with mixture logits = log masks, over ``Normal`` components,
  wrapped in ``Independent`` over (H, W, C): batch shape [B], event shape [H, W, C].
* Diagonal Gaussians (posteriors q(z|·) and priors p(z|·)): ``Independent(Normal)`` over
  the last axis: batch shape [B, K] (or [B]), event shape [D]. A sample has shape
  sample_shape + [B, K, D]; ``log_prob`` sums over D.
* KL terms are Monte-Carlo: KL ≈ log q(z) − log p(z) at the posterior sample z.
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

MASK_FLOOR = 1e-5  # the references clamp both mask distributions here before the KL


def diagonal_gaussian(mean, scale):
    """N(mean, diag(scale²)); batch shape = mean.shape[:-1], event shape [D]."""
    return tfd.Independent(tfd.Normal(loc=mean, scale=scale), reinterpreted_batch_ndims=1)


def standard_normal_like(z):
    """N(0, I) with the batch and event shape of z."""
    return diagonal_gaussian(tf.zeros_like(z), tf.ones_like(z))


def mixture_likelihood(log_masks, components, pixel_std):
    """Per-pixel spatial Gaussian mixture.

    Args:
      log_masks: [B, K, H, W, 1], logsumexp over K = 0.
      components: [B, K, H, W, C], the component means x_k.
      pixel_std: scalar or [K] standard deviation σ_x per slot.
    Returns:
      A distribution with batch shape [B] and event shape [H, W, C].
    """
    log_masks = tf.cast(log_masks, tf.float32)
    components = tf.cast(components, tf.float32)
    channels = tf.shape(components)[-1]
    # Slots move to the last axis: tfp mixtures index components there.
    logits = tf.transpose(log_masks, [0, 2, 3, 4, 1])  # [B, H, W, 1, K]
    logits = tf.repeat(logits, channels, axis=3)  # [B, H, W, C, K]
    means = tf.transpose(components, [0, 2, 3, 4, 1])  # [B, H, W, C, K]
    scale = tf.broadcast_to(tf.cast(pixel_std, tf.float32), tf.shape(means)[-1:])
    pixel = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.Normal(loc=means, scale=scale),
    )
    return tfd.Independent(pixel, reinterpreted_batch_ndims=3)


def reconstruction_error(images, log_masks, components, pixel_std):
    """err = −log p(x | z) per image, [B] (nats)."""
    likelihood = mixture_likelihood(log_masks, components, pixel_std)
    return -likelihood.log_prob(tf.cast(images, tf.float32))


def monte_carlo_kl(z, posterior, prior):
    """log q(z) − log p(z), summed over the event (latent) axis: shape = batch shape."""
    return posterior.log_prob(z) - prior.log_prob(z)


def mask_kl(log_masks, decoded_mask_logits, floor=MASK_FLOOR):
    """Σ over pixels of KL(Cat(m) ‖ Cat(softmax_k(decoded logits))), per image: [B].

    Both distributions are clamped below at ``floor`` and renormalised (the reference
    builds categoricals from the clamped probabilities); the clamp is taken in log space,
    log max(m, floor) = max(log m, log floor).

    Args:
      log_masks: [B, K, H, W, 1] attention log masks (logsumexp over K = 0).
      decoded_mask_logits: [B, K, H, W, 1] unnormalised decoded mask logits.
    """
    log_floor = math.log(floor)
    log_q = tf.maximum(tf.cast(log_masks, tf.float32), log_floor)
    log_p = tf.maximum(tf.nn.log_softmax(tf.cast(decoded_mask_logits, tf.float32), axis=1),
                       log_floor)
    # Slots to the last axis: the categorical's event; batch shape [B, H, W, 1].
    q = tfd.Categorical(logits=tf.transpose(log_q, [0, 2, 3, 4, 1]))
    p = tfd.Categorical(logits=tf.transpose(log_p, [0, 2, 3, 4, 1]))
    return tf.reduce_sum(tfd.kl_divergence(q, p), axis=[1, 2, 3])
