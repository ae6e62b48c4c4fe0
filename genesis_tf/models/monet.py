r"""MONet (Burgess et al. 2019), as compared against in the GENESIS paper (appendix B.2).

Notation: B images x ∈ [0,1]^{H×W×3}, K slots, component latents z_k ∈ R^D (D = 16).

Inference (attention)::

    log s_0 = 0
    log α_k, log(1 − α_k) = UNet(concat(x, log s_{k-1}))            k = 1..K−1
    log m_k = log s_{k-1} + log α_k,  log s_k = log s_{k-1} + log(1 − α_k)
    log m_K = log s_{K-1}                                      (Σ_k m_k = 1 per pixel)

Component VAE (all K slots in one batch of B·K)::

    q(z_k | x, m_k) = N(μ_k, σ_k²) from ComponentEncoder(concat(log m_k, x)) (ReLU)
    x_k, m̃-logit_k = BroadcastDecoder(z_k) (ReLU; 4 channels: sigmoid RGB means, a logit)
    p(z_k) = N(0, I);  m̃_k = softmax over k of the decoded logits

Objective per image (nats)::

    err     = −Σ_{h,w,c} log Σ_k m_k N(x_{hwc}; x_k(h,w,c), σ_k)
              σ_1 = first_pixel_std (0.09), σ_k = pixel_std (0.11) for k > 1
              (the GENESIS paper's comparison uses 0.7 for both)
    kl/z    = Σ_k [log q(z_k) − log p(z_k)] at the posterior sample (Monte-Carlo)
    kl/mask = Σ_{h,w} KL(Cat(m) ‖ Cat(m̃)), both clamped below at 1e-5 (then renormalised)

The paper weights the two KLs with β = γ = 0.5; the GENESIS comparison puts one GECO β on
their sum, which is what ``base.kl_total`` gives. Generation: z_k ~ N(0, I) for every
slot independently, masks = softmax over slots of the decoded logits, x = Σ_k m̃_k x_k.

Cost at 64×64 (multiply-adds): the U-Net runs K−1 times per image, ≈ 132 M each; the
component VAE once per slot-image, ≈ 6 M to encode and ≈ 146 M to decode (the broadcast
decoder dominates). 974,085 parameters (U-Net 604,513, component VAE 369,572), whatever K.
"""
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from genesis_tf import distributions as dists
from genesis_tf.layers import tracking
from genesis_tf.layers.broadcast_decoder import BroadcastDecoder
from genesis_tf.layers.component_vae import ComponentEncoder
from genesis_tf.layers.unet import AttentionUNet, num_blocks
from genesis_tf.models.base import (
    RandomNormal,
    SceneModel,
    check_latent_groups,
    check_num_slots,
    mean_or_sample,
    to_float32,
)
from genesis_tf.models.output import SceneOutput

tfd = tfp.distributions

MASK_FLOOR = dists.MASK_FLOOR
mask_kl = dists.mask_kl  # shared with GENESIS-V2's optional mask-consistency term


class MONetComponentVAE(tracking.Layer):
    """MONet's component VAE: the GENESIS component VAE with ReLU and a 4-channel decoder.

    Encoder: concat(log m_k, x) -> four 3×3 stride-2 convs (32, 32, 64, 64) -> Dense 256
    -> Dense 2·D (mean, softplus(· + 0.5) + 1e-8 scale). Decoder: spatial broadcast, four
    3×3 valid convs of 32 channels, a 1×1 conv to 4 channels.
    """

    def __init__(self, image_size=64, latent_size=16, **kwargs):
        super().__init__(**kwargs)
        self.encoder = ComponentEncoder(latent_size, activation="relu", name="encoder")
        self.decoder = BroadcastDecoder(image_size, out_channels=4, filters=32,
                                        activation="relu", output_activation=None,
                                        name="decoder")

    def encode(self, log_masks, images):
        """log_masks [N, H, W, 1], images [N, H, W, 3] -> (mean, scale), each [N, D]."""
        return self.encoder(ops.concatenate([log_masks, images], axis=-1))

    def decode(self, z):
        """z [N, D] -> (component means [N, H, W, 3] in (0, 1), mask logits [N, H, W, 1])."""
        out = self.decoder(z)  # [N, H, W, 4]
        return ops.sigmoid(out[..., :3]), out[..., 3:]

    def call(self, log_masks, images):
        return self.encode(log_masks, images)


class MONet(SceneModel):
    """MONet behind the scene-model contract (genesis_tf/models/base.py).

    >>> model = MONet(image_size=64, num_slots=5)
    >>> out = model(images)                       # images [B, 64, 64, 3] in [0, 1]
    >>> terms = model.loss_terms(images, out)     # {'err', 'kl/z', 'kl/mask'}: each [B]
    >>> more = model(images, num_slots=7)         # more slots at test time
    >>> scenes = model.sample(batch_size=8, seed=0)
    """

    def __init__(self, image_size=64, num_slots=5, latent_size=16, pixel_std=0.11,
                 first_pixel_std=0.09, filter_start=32, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        num_blocks(image_size)  # Fails early with the supported sizes.
        check_num_slots(num_slots)
        self.num_slots = num_slots
        self.latent_size = latent_size
        self.pixel_std = pixel_std
        self.first_pixel_std = first_pixel_std
        self.filter_start = filter_start
        self.attention = AttentionUNet(image_size, filter_start, name="attention")
        self.component_vae = MONetComponentVAE(image_size, latent_size, name="component_vae")

    # -- the contract ---------------------------------------------------------------------

    def call(self, images, training=False, num_slots=None, deterministic=False, seed=None):
        """Decomposes images [B, H, W, 3] into K slots; returns a SceneOutput.

        num_slots: run more (or fewer) slots than configured, e.g. at test time.
        deterministic: use posterior means instead of samples (features, evaluation).
        seed: int for reproducible posterior samples.
        """
        del training  # No layer of MONet behaves differently in training.
        images = self.prepare_images(images)
        num_slots = check_num_slots(num_slots or self.num_slots)
        noise = RandomNormal(seed)
        batch, size = tf.shape(images)[0], self.image_size
        log_masks = self._attend(images, num_slots)  # [B, K, H, W, 1]
        # The component VAE sees all B·K (mask, image) pairs at once, slot-minor.
        flat_log_masks = tf.reshape(log_masks, [-1, size, size, 1])  # [B·K, H, W, 1]
        flat_images = tf.repeat(images, num_slots, axis=0)  # [B·K, H, W, 3]
        mean, scale = self.component_vae.encode(flat_log_masks, flat_images)
        mean, scale = to_float32(mean), to_float32(scale)  # [B·K, D]
        z = mean if deterministic else mean + scale * noise(tf.shape(mean))
        components, decoded_logits = self.component_vae.decode(z)

        def per_slot(t):
            return _per_slot(t, batch, num_slots)

        components = per_slot(components)  # [B, K, H, W, 3]
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * components, axis=1),
            log_masks=log_masks,
            components=components,
            z_comp=per_slot(z),
            comp_mean=per_slot(mean),
            comp_scale=per_slot(scale),
            decoded_mask_logits=per_slot(decoded_logits),
        )

    def loss_terms(self, images, out):
        """{'err', 'kl/z', 'kl/mask'}, each [B] in nats; −ELBO = err + Σ kl/* (base.elbo)."""
        images = self.prepare_images(images)
        num_slots = out.log_masks.shape[1]
        err = dists.reconstruction_error(images, out.log_masks, out.components,
                                         self.pixel_stds(num_slots))
        posterior = dists.diagonal_gaussian(out.comp_mean, out.comp_scale)
        prior = dists.standard_normal_like(out.z_comp)
        kl_z = tf.reduce_sum(dists.monte_carlo_kl(out.z_comp, posterior, prior), axis=1)
        kl_mask = mask_kl(out.log_masks, out.decoded_mask_logits)
        return {"err": err, "kl/z": kl_z, "kl/mask": kl_mask}

    def sample(self, batch_size=8, seed=None, num_slots=None):
        """Generates scenes: z_k ~ N(0, I) per slot, masks from the decoded logits."""
        num_slots = check_num_slots(num_slots or self.num_slots)
        noise = RandomNormal(seed)
        batch_size = tf.convert_to_tensor(batch_size, tf.int32)
        z = noise(tf.stack([batch_size * num_slots, self.latent_size]))  # [B·K, D]
        components, decoded_logits = self.component_vae.decode(z)
        components = _per_slot(components, batch_size, num_slots)  # [B, K, H, W, 3]
        decoded_logits = _per_slot(decoded_logits, batch_size, num_slots)  # [B, K, H, W, 1]
        log_masks = tf.nn.log_softmax(decoded_logits, axis=1)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * components, axis=1),
            log_masks=log_masks,
            components=components,
            z_comp=_per_slot(z, batch_size, num_slots),
            decoded_mask_logits=decoded_logits,
        )

    def features(self, images, num_slots=None):
        """Posterior means of every slot's latent, concatenated: [B, K·D]."""
        out = self(images, training=False, num_slots=num_slots, deterministic=True)
        mean = out.comp_mean  # [B, K, D]
        return tf.reshape(mean, [tf.shape(mean)[0], mean.shape[1] * mean.shape[2]])

    def latents(self, out):
        """{'component': [B, K, D]}: posterior means where ``out`` has them, else samples."""
        return {"component": mean_or_sample(out.comp_mean, out.z_comp)}

    def latent_sizes(self):
        return {"component": self.latent_size}

    def decode(self, latents):
        """Scenes from component latents: the decoded components, and the decoded masks
        m̃_k = softmax over k (MONet has no mask latent; its attention masks need the
        image)."""
        z = check_latent_groups(self, latents)["component"]  # [B, K, D]
        batch, num_slots = tf.shape(z)[0], z.shape[1]
        components, decoded_logits = self.component_vae.decode(
            tf.reshape(z, [-1, self.latent_size]))
        components = _per_slot(components, batch, num_slots)
        decoded_logits = _per_slot(decoded_logits, batch, num_slots)
        log_masks = tf.nn.log_softmax(decoded_logits, axis=1)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * components, axis=1),
            log_masks=log_masks,
            components=components,
            z_comp=z,
            decoded_mask_logits=decoded_logits,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_slots": self.num_slots,
            "latent_size": self.latent_size,
            "pixel_std": self.pixel_std,
            "first_pixel_std": self.first_pixel_std,
            "filter_start": self.filter_start,
        }

    # -- pieces ---------------------------------------------------------------------------

    def pixel_stds(self, num_slots):
        """σ_k of the likelihood, [K]: first_pixel_std for slot 1, pixel_std after it."""
        return tf.constant([self.first_pixel_std] + [self.pixel_std] * (num_slots - 1),
                           tf.float32)

    def _attend(self, images, num_slots):
        """The recurrent attention in log space -> log masks [B, K, H, W, 1] (float32)."""
        log_scope = tf.zeros_like(images[..., :1])  # log s_0 = 0: [B, H, W, 1]
        log_masks = []
        for _ in range(num_slots - 1):
            log_alpha, log_pass = self.attention(images, log_scope)  # float32
            log_masks.append(log_scope + log_alpha)
            log_scope = log_scope + log_pass
        log_masks.append(log_scope)  # the last slot takes what is left of the scope
        return tf.stack(log_masks, axis=1)


def _per_slot(t, batch, num_slots):
    """[B·K, ...] -> [B, K, ...] in float32 (static trailing shape kept)."""
    return tf.reshape(to_float32(t), [batch, num_slots] + t.shape[1:].as_list())


__all__ = ["MONet", "MONetComponentVAE", "mask_kl"]
