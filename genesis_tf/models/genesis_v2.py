r"""GENESIS-V2 (Engelcke, Parker Jones and Posner, NeurIPS 2021), as the authors' code
implements it (../shared/GENESIS_V2.md states it layer by layer).

Notation: B images x ∈ [0,1]^{S×S×3}, K slots, one latent z_k ∈ R^D per slot (D = 64).

Inference (no RNN, no refinement)::

    f = UNetEncoder(x)                                  [B, S, S, 64], group norm
    c = SemiConvEmbedding(ConvGNReLU(f))                [B, S, S, 8], gate init 0
    m_1..m_K = IC-SBP(c, u),  u ~ U[0,1)^{S×S}          one draw per forward pass
    q(z_k | x) = N(μ_k, σ_k) = MLP(masked mean of ConvGNReLU+1×1(f) under m_k)

Generative model::

    p(z_1) = N(0, I),  p(z_k | z_<k) = N from an LSTM over z_<k (GENESIS's mask prior)
    (x_k logits, a_k) = SlotBroadcastDecoder(z_k), each slot alone
    x_k = sigmoid(x_k logits),  m̂ = softmax_k(a)
    p(x | z) = Π_{h,w,c} Σ_k m̂_k(h,w) N(x_{hwc}; x_k(h,w,c), 0.7²)

Objective (nats per image): err = −log p(x | z), kl/l = Σ_k [log q(z_k) − log p(z_k | z_<k)]
at the posterior samples, and with ``mask_kl_loss`` kl/m = Σ_pixels KL(m ‖ m̂) (the decoded
masks held constant unless ``detach_decoded_masks=False``); GECO on err + β·Σ kl/*.

Two mask sets: ``log_masks`` holds the **decoded** masks m̂ (they give ``recon``, the
likelihood, samples and figures, as in the reference); ``ic_sbp_log_masks`` holds the
IC-SBP masks m (the reference's ``ari`` / ``msc`` use them, its ``*_r`` metrics the decoded
ones). Latents are the one group "slot" (fields z_mask, mask_mean, ... of SceneOutput, as
GENESIS-S).

Deliberate differences from the reference, all without effect on the function computed:
the feature head runs once, not once per slot; the likelihood is a logsumexp (TFP
MixtureSameFamily), not exp-sum-log; log σ is float32 (float64 there); the Keras LSTM has
one bias for PyTorch's two (1,024 fewer parameters: 2,728,398 at 64×64). Image sizes are
powers of two from 32 (the reference defines 32, 64 and 128 only); ``latent_size`` above
64 is not supported there and untested here. ``dynamic_K`` (the reference's batch-1 early
stop) is not implemented; ``call(num_slots=…)`` runs any K ≥ 2 instead. With
``deterministic=True`` and no seed, the IC-SBP's draw is one fixed draw (the reference
draws anew in every pass), so that features, exports and traversals are reproducible.
"""
import tensorflow as tf

from genesis_tf import distributions as dists
from genesis_tf.layers.ic_sbp import InstanceColouringSBP
from genesis_tf.layers.initializers import TorchConv2D
from genesis_tf.layers.priors import AutoregressivePrior
from genesis_tf.layers.semiconv import SemiConvEmbedding
from genesis_tf.layers.slot_decoder import SlotBroadcastDecoder
from genesis_tf.layers.slot_posterior import MaskedMeanPosterior
from genesis_tf.layers.unet import UNetBlock, UNetEncoder
from genesis_tf.models.base import (
    RandomNormal,
    SceneModel,
    check_latent_groups,
    check_num_slots,
    mean_or_sample,
    to_float32,
)
from genesis_tf.models.output import SceneOutput


class GenesisV2(SceneModel):
    """GENESIS-V2: IC-SBP masks from pixel embeddings, one latent per slot.

    >>> model = GenesisV2(image_size=64, num_slots=7)
    >>> out = model(images, training=True, seed=0)   # images [B, 64, 64, 3] in [0, 1]
    >>> terms = model.loss_terms(images, out)        # {'err', 'kl/l'}: each [B]
    >>> out.log_masks, out.ic_sbp_log_masks          # decoded and IC-SBP masks
    >>> scenes = model.sample(batch_size=8, seed=0)

    ``call(..., uniform=u)`` takes the IC-SBP's draw u [B, S, S] in [0, 1) (to compare
    with another implementation on the same draw); else it is drawn, from ``seed`` when
    one is given.
    """

    GROUP = "slot"

    def __init__(self, image_size=64, num_slots=7, latent_size=64, pixel_std=0.7,
                 kernel="gaussian", semiconv=True, mask_kl_loss=False,
                 detach_decoded_masks=True, prior_lstm_units=256, embedding_size=8,
                 **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        check_num_slots(num_slots)
        self.num_slots = num_slots
        self.latent_size = latent_size
        self.pixel_std = pixel_std
        self.kernel = kernel
        self.semiconv = semiconv
        self.mask_kl_loss = mask_kl_loss
        self.detach_decoded_masks = detach_decoded_masks
        self.prior_lstm_units = prior_lstm_units
        self.embedding_size = embedding_size
        channels = min(latent_size, 64)
        self.encoder = UNetEncoder(image_size, filter_start=channels, name="encoder")
        self.seg_head = UNetBlock(latent_size, norm="group", name="seg_head")
        self.colour_head = SemiConvEmbedding(embedding_size, semiconv, name="colour_head")
        self.ic_sbp = InstanceColouringSBP(num_slots, kernel, name="ic_sbp")
        self.feat_head = UNetBlock(latent_size, norm="group", name="feat_head")
        self.feat_out = TorchConv2D(2 * latent_size, 1, name="feat_out")
        self.posterior = MaskedMeanPosterior(latent_size, name="posterior")
        self.decoder = SlotBroadcastDecoder(image_size, filters=channels, name="decoder")
        self.prior = AutoregressivePrior(latent_size, prior_lstm_units, name="prior")

    # -- the contract ---------------------------------------------------------------------

    def call(self, images, training=False, num_slots=None, deterministic=False, seed=None,
             uniform=None):
        """Decomposes images [B, S, S, 3] into K slots; returns a SceneOutput.

        num_slots: run K − 1 IC-SBP steps for K slots (any K >= 2; σ stays the one learnt
        for the configured K). deterministic: posterior means instead of samples and,
        without ``seed``, one fixed IC-SBP draw for every image (an image's decomposition
        then depends neither on the call nor on its place in the batch). seed: int for
        reproducible draws. uniform: the IC-SBP's draw [B, S, S] in [0, 1).
        """
        del training  # no batch norm, no dropout: training and inference agree
        images = self.prepare_images(images)
        num_slots = check_num_slots(num_slots or self.num_slots)
        noise = RandomNormal(seed)
        features = self.encoder(images)  # [B, S, S, c]
        embedding, _ = self.colour_head(self.seg_head(features)[0])  # [B, S, S, 8]
        if uniform is None:
            uniform = self._draw_uniform(images, deterministic, seed, noise)
        else:
            uniform = self._checked_uniform(uniform, images)
        ic_sbp_log_masks, _ = self.ic_sbp(embedding, uniform, num_slots=num_slots)
        pooled_features = self.feat_out(self.feat_head(features)[0])  # [B, S, S, 2D]
        mean, scale = self.posterior(pooled_features, ic_sbp_log_masks)  # [B, K, D]
        z = mean if deterministic else mean + scale * noise(tf.shape(mean))
        prior_mean, prior_scale = self.prior.sequence_params(z)
        return self._decode(z)._replace(
            mask_mean=mean, mask_scale=scale, mask_prior_mean=prior_mean,
            mask_prior_scale=prior_scale, ic_sbp_log_masks=ic_sbp_log_masks)

    def loss_terms(self, images, out):
        """{'err', 'kl/l'} (+ 'kl/m' with mask_kl_loss), each [B] in nats."""
        images = self.prepare_images(images)
        err = dists.reconstruction_error(images, out.log_masks, out.components,
                                         self.pixel_std)
        posterior = dists.diagonal_gaussian(out.mask_mean, out.mask_scale)
        prior = dists.diagonal_gaussian(out.mask_prior_mean, out.mask_prior_scale)
        terms = {"err": err,
                 "kl/l": tf.reduce_sum(dists.monte_carlo_kl(out.z_mask, posterior, prior), 1)}
        if self.mask_kl_loss:
            decoded = out.decoded_mask_logits
            if self.detach_decoded_masks:
                decoded = tf.stop_gradient(decoded)
            terms["kl/m"] = dists.mask_kl(out.ic_sbp_log_masks, decoded)
        return terms

    def sample(self, batch_size=8, seed=None, num_slots=None):
        """Generates scenes slot by slot from the autoregressive prior (any K >= 1)."""
        num_slots = self.num_slots if num_slots is None else num_slots
        if not isinstance(num_slots, int) or num_slots < 1:
            raise ValueError(f"num_slots must be a Python int >= 1, got {num_slots!r}")
        batch_size = tf.convert_to_tensor(batch_size, tf.int32)
        z = self.prior.sample_sequence(batch_size, num_slots, RandomNormal(seed),
                                       dtype=self.compute_dtype)
        return self._decode(z)

    def features(self, images, num_slots=None):
        """Posterior means of every slot, concatenated: [B, K·D]."""
        out = self(images, training=False, num_slots=num_slots, deterministic=True)
        num_slots = out.mask_mean.shape[1]
        return tf.reshape(out.mask_mean, [-1, num_slots * self.latent_size])

    def latents(self, out):
        """{'slot': [B, K, D]}: posterior means where ``out`` has them, else samples."""
        return {self.GROUP: mean_or_sample(out.mask_mean, out.z_mask)}

    def latent_sizes(self):
        return {self.GROUP: self.latent_size}

    def decode(self, latents):
        """Scenes from latents (as ``latents`` returns them)."""
        return self._decode(check_latent_groups(self, latents)[self.GROUP])

    def get_config(self):
        return {
            **super().get_config(),
            "num_slots": self.num_slots,
            "latent_size": self.latent_size,
            "pixel_std": self.pixel_std,
            "kernel": self.kernel,
            "semiconv": self.semiconv,
            "mask_kl_loss": self.mask_kl_loss,
            "detach_decoded_masks": self.detach_decoded_masks,
            "prior_lstm_units": self.prior_lstm_units,
            "embedding_size": self.embedding_size,
        }

    # -- pieces ---------------------------------------------------------------------------

    def _draw_uniform(self, images, deterministic, seed, noise):
        """The IC-SBP's u [B, S, S]: from ``noise`` (seeded or not), or, deterministic and
        unseeded, one fixed draw [S, S] shared by every image."""
        if deterministic and seed is None:
            size = self.image_size
            fixed = tf.random.stateless_uniform([size, size], seed=[0, 0], alg="philox")
            return tf.broadcast_to(fixed, tf.shape(images)[:3])
        return noise.uniform(tf.shape(images)[:3])

    def _checked_uniform(self, uniform, images):
        """A given IC-SBP draw as float32 [B, S, S], or a ValueError saying what it must be."""
        uniform = tf.convert_to_tensor(uniform, tf.float32)
        expected = [images.shape[0], self.image_size, self.image_size]
        if uniform.shape.rank != 3 or not uniform.shape.is_compatible_with(expected):
            raise ValueError(f"uniform must be the IC-SBP's draw [B, S, S] = {expected} in "
                             f"[0, 1), one value per pixel; got shape {uniform.shape}")
        return uniform

    def _decode(self, z):
        """z [B, K, D] -> SceneOutput with the decoded masks (B·K slots in one batch)."""
        batch, num_slots, size = tf.shape(z)[0], z.shape[1], self.image_size
        decoded = to_float32(self.decoder(tf.reshape(z, [-1, self.latent_size])))
        decoded = tf.reshape(decoded, [batch, num_slots, size, size, 4])
        # tf.split, not slices: a strided slice's gradient (StridedSliceGrad) is a generic
        # kernel, 2% of the 32x32 training step's kernel time; a split's is a concat.
        rgb, logits = tf.split(decoded, [3, 1], axis=-1)  # [B, K, S, S, 3], [.., 1]
        components = tf.sigmoid(rgb)
        log_masks = tf.nn.log_softmax(logits, axis=1)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * components, axis=1),
            log_masks=log_masks,
            components=components,
            z_mask=z,
            decoded_mask_logits=logits,
        )
