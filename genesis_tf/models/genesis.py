r"""GENESIS and GENESIS-S (Engelcke et al., ICLR 2020).

Notation: B images x ∈ [0,1]^{H×W×3}, K slots, mask latents z^m_k ∈ R^{Dm} (Dm = 64),
component latents z^c_k ∈ R^{Dc} (Dc = 16).

Generative model (GENESIS)::

    p(x, z^m, z^c) = p(x | z^m, z^c) Π_k p(z^m_k | z^m_<k) p(z^c_k | z^m_k)
    p(z^m_1) = N(0, I);  p(z^m_k | z^m_<k) = N(μ_k, σ_k²) from an LSTM over z^m_<k
    p(z^c_k | z^m_k) = N(μ^c_k, σ^c_k²) from an MLP of z^m_k
    π_1..π_K = stick-breaking(a_1..a_{K-1}),  a_k = MaskDecoder(z^m_k)
    x_k = BroadcastDecoder(z^c_k)
    p(x | z) = Π_{h,w,c} Σ_k π_k(h,w) N(x_{hwc}; x_k(h,w,c), σ_x²),  σ_x = 0.7

Inference::

    q(z^m_k | x, z^m_<k) = N from MaskEncoder(x) and an LSTM over z^m_<k
    q(z^c_k | x, π_k)    = N from ComponentEncoder(concat(log π_k, x))

Objective (per image, nats): err = −log p(x | z), kl_m = Σ_k [log q(z^m_k) − log p(z^m_k)],
kl_l = Σ_k [log q(z^c_k) − log p(z^c_k)] at the posterior samples (Monte-Carlo); the
negative ELBO is err + kl_m + kl_l; training minimises err + β·(kl_m + kl_l) with GECO.

Distribution shapes (see genesis_tf/distributions.py): every posterior and prior is an
``Independent(Normal)`` with batch shape [B, K] and event shape [Dm] or [Dc]; samples are
[B, K, D] (sample shape []). The likelihood has batch shape [B], event shape [H, W, 3].

GENESIS-S uses one latent z_k per slot (Dm = 64) for both the mask (gated decoder) and the
component (a second broadcast decoder); its prior is the autoregressive LSTM prior alone;
kl_l is 0.

Cost: the mask decoder dominates (≈ 395 M multiply-adds per slot-image at 64×64). The
K-th mask latent's logits are never used by the stick-breaking. In training mode all K
latents are decoded anyway, in one batch of B·K as in the reference: the decoder's batch
norm normalises over that batch, so its statistics (and through them every output and
gradient) include the K-th latent. With moving statistics (inference, sampling) the
slots are independent and only K−1 are decoded.
"""
import tensorflow as tf

from genesis_tf import distributions as dists
from genesis_tf.layers import (
    AutoregressivePrior,
    BroadcastDecoder,
    ComponentPrior,
    ComponentVAE,
    MaskDecoder,
    MaskEncoder,
    MaskPosterior,
    StickBreaking,
)
from genesis_tf.layers.mask_vae import architecture
from genesis_tf.models.base import (
    RandomNormal,
    SceneModel,
    check_latent_groups,
    check_num_slots,
    mean_or_sample,
    to_float32,
)
from genesis_tf.models.output import SceneOutput


class _SequentialSlotModel(SceneModel):
    """What GENESIS and GENESIS-S share: sequential mask inference, the mask decoder and
    the autoregressive mask prior. Subclasses supply the component part."""

    MASK_GROUP = "mask"  # the name of z^m in latents()

    def __init__(self, image_size=64, num_slots=7, mask_latent_size=64, pixel_std=0.7,
                 feature_size=256, inference_lstm_units=128, prior_lstm_units=256,
                 **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        architecture(image_size)  # Fails early with the supported sizes.
        check_num_slots(num_slots)
        self.num_slots = num_slots
        self.mask_latent_size = mask_latent_size
        self.pixel_std = pixel_std
        self.feature_size = feature_size
        self.inference_lstm_units = inference_lstm_units
        self.prior_lstm_units = prior_lstm_units
        self.mask_encoder = MaskEncoder(image_size, feature_size, name="mask_encoder")
        self.mask_posterior = MaskPosterior(mask_latent_size, inference_lstm_units,
                                            name="mask_posterior")
        self.mask_decoder = MaskDecoder(image_size, name="mask_decoder")
        # Log-space arithmetic stays in float32 under a mixed-precision policy.
        self.stick_breaking = StickBreaking(dtype="float32", name="stick_breaking")
        self.mask_prior = AutoregressivePrior(mask_latent_size, prior_lstm_units,
                                              name="mask_prior")

    # -- the contract ---------------------------------------------------------------------

    def call(self, images, training=False, num_slots=None, deterministic=False, seed=None):
        """Decomposes images [B, H, W, 3] into K slots; returns a SceneOutput.

        num_slots: run more (or fewer) slots than configured, e.g. at test time.
        deterministic: use posterior means instead of samples (features, evaluation).
        seed: int for reproducible posterior samples.
        """
        images = self.prepare_images(images)
        num_slots = check_num_slots(num_slots or self.num_slots)
        noise = RandomNormal(seed)
        z_mask, mask_mean, mask_scale = self._infer_mask_latents(
            images, num_slots, training, deterministic, noise)
        mask_logits, log_masks = self._decode_masks(z_mask, training)
        mask_prior_mean, mask_prior_scale = self._mask_prior_params(z_mask)
        parts = self._infer_components(images, log_masks, z_mask, training, deterministic,
                                       noise)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * parts["components"], axis=1),
            log_masks=log_masks,
            z_mask=z_mask,
            mask_logits=mask_logits,
            mask_mean=mask_mean,
            mask_scale=mask_scale,
            mask_prior_mean=mask_prior_mean,
            mask_prior_scale=mask_prior_scale,
            **parts,
        )

    def loss_terms(self, images, out):
        """{'err', 'kl/m', ...}, each [B] in nats; −ELBO = err + Σ kl/* (base.elbo)."""
        images = self.prepare_images(images)
        posterior = dists.diagonal_gaussian(out.mask_mean, out.mask_scale)
        prior = dists.diagonal_gaussian(out.mask_prior_mean, out.mask_prior_scale)
        kl_m = tf.reduce_sum(dists.monte_carlo_kl(out.z_mask, posterior, prior), axis=1)
        err = dists.reconstruction_error(images, out.log_masks, out.components,
                                         self.pixel_std)
        return {"err": err, "kl/m": kl_m, **self._component_kl(out)}

    def sample(self, batch_size=8, seed=None, num_slots=None):
        """Generates scenes slot by slot from the priors; returns a SceneOutput."""
        num_slots = check_num_slots(num_slots or self.num_slots)
        noise = RandomNormal(seed)
        batch_size = tf.convert_to_tensor(batch_size, tf.int32)
        z_mask = self._sample_mask_latents(batch_size, num_slots, noise)
        mask_logits, log_masks = self._decode_masks(z_mask, training=False)
        parts = self._sample_components(z_mask, noise)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * parts["components"], axis=1),
            log_masks=log_masks,
            z_mask=z_mask,
            mask_logits=mask_logits,
            **parts,
        )

    def features(self, images, num_slots=None):
        """Posterior means of every slot's latents, concatenated: [B, K·Dm (+ K·Dc)]."""
        out = self(images, training=False, num_slots=num_slots, deterministic=True)
        batch = tf.shape(out.mask_mean)[0]
        means = [m for m in (out.mask_mean, out.comp_mean) if m is not None]
        # K·D as a static width where known, so that exported signatures declare it.
        return tf.concat([tf.reshape(m, [batch, m.shape[1:].num_elements() or -1])
                          for m in means], axis=1)

    def latents(self, out):
        """{'mask': [B, K, Dm], ...}: posterior means where ``out`` has them, else samples."""
        return {self.MASK_GROUP: mean_or_sample(out.mask_mean, out.z_mask),
                **self._component_latents(out)}

    def latent_sizes(self):
        return {self.MASK_GROUP: self.mask_latent_size, **self._component_latent_sizes()}

    def decode(self, latents):
        """Scenes from latents (as ``latents`` returns them), in inference mode."""
        latents = check_latent_groups(self, latents)
        z_mask = latents[self.MASK_GROUP]
        mask_logits, log_masks = self._decode_masks(z_mask, training=False)
        parts = self._decode_component_latents(latents, z_mask)
        return SceneOutput(
            recon=tf.reduce_sum(tf.exp(log_masks) * parts["components"], axis=1),
            log_masks=log_masks,
            z_mask=z_mask,
            mask_logits=mask_logits,
            **parts,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_slots": self.num_slots,
            "pixel_std": self.pixel_std,
            "feature_size": self.feature_size,
            "inference_lstm_units": self.inference_lstm_units,
            "prior_lstm_units": self.prior_lstm_units,
        }

    # -- the component part (subclasses) --------------------------------------------------

    def _infer_components(self, images, log_masks, z_mask, training, deterministic, noise):
        """-> dict of SceneOutput fields: 'components' [B, K, H, W, 3] and latents."""
        raise NotImplementedError

    def _sample_components(self, z_mask, noise):
        """-> dict of SceneOutput fields for generated scenes."""
        raise NotImplementedError

    def _component_kl(self, out):
        """-> {'kl/<name>': [B]} of the component latents ({} when there are none)."""
        raise NotImplementedError

    def _component_latents(self, out):
        """-> {group: [B, K, D]} of the component latents in ``out`` ({} when none)."""
        raise NotImplementedError

    def _component_latent_sizes(self):
        """-> {group: D} of the component latents ({} when none)."""
        raise NotImplementedError

    def _decode_component_latents(self, latents, z_mask):
        """-> dict of SceneOutput fields ('components', ...) decoded from ``latents``."""
        raise NotImplementedError

    # -- pieces ---------------------------------------------------------------------------

    def _infer_mask_latents(self, images, num_slots, training, deterministic, noise):
        """q(z^m_k | x, z^m_<k) for k = 1..K -> (z, mean, scale), each [B, K, Dm]."""
        features = self.mask_encoder(images, training=training)  # [B, F]
        mean, scale = self.mask_posterior.first(features)
        means, scales, zs = [], [], []
        state = self.mask_posterior.initial_state(features)
        for k in range(num_slots):
            if k > 0:
                mean, scale, state = self.mask_posterior.step(features, zs[-1], state,
                                                              training=training)
            mean, scale = to_float32(mean), to_float32(scale)
            z = mean if deterministic else mean + scale * noise(tf.shape(mean))
            means.append(mean)
            scales.append(scale)
            zs.append(z)
        return tf.stack(zs, 1), tf.stack(means, 1), tf.stack(scales, 1)

    def _decode_masks(self, z_mask, training):
        """z^m [B, K, Dm] -> (attention logits [B, K−1, H, W, 1], log masks [B, K, H, W, 1]).

        Training decodes all K latents (batch-norm statistics over B·K, as the reference);
        otherwise the unused K-th is skipped.
        """
        batch, num_slots = tf.shape(z_mask)[0], z_mask.shape[1]
        decoded = num_slots if training else num_slots - 1
        size = self.image_size
        flat = tf.reshape(z_mask[:, :decoded], [-1, self.mask_latent_size])  # [B·k, Dm]
        logits = to_float32(self.mask_decoder(flat, training=training))  # [B·k, H, W, 1]
        logits = tf.reshape(logits, [batch, decoded, size, size, 1])[:, : num_slots - 1]
        log_masks, _ = self.stick_breaking(logits)
        return logits, log_masks

    def _mask_prior_params(self, z_mask):
        """p(z^m_k | z^m_<k) for k = 1..K from the posterior samples -> mean, scale [B, K, Dm]."""
        return self.mask_prior.sequence_params(z_mask)

    def _sample_mask_latents(self, batch_size, num_slots, noise):
        """z^m_1 ~ N(0, I), z^m_k ~ p(z^m_k | z^m_<k) -> [B, K, Dm]."""
        return self.mask_prior.sample_sequence(batch_size, num_slots, noise,
                                               dtype=self.compute_dtype)

    def _per_slot(self, t, batch, num_slots):
        """[B·K, ...] -> [B, K, ...] in float32."""
        return tf.reshape(to_float32(t), tf.concat([[batch, num_slots], tf.shape(t)[1:]], 0))


class Genesis(_SequentialSlotModel):
    """GENESIS: separate mask and component latents, two-stage decoding.

    >>> model = Genesis(image_size=64, num_slots=7)
    >>> out = model(images, training=True)        # images [B, 64, 64, 3] in [0, 1]
    >>> terms = model.loss_terms(images, out)     # {'err', 'kl/m', 'kl/l'}: each [B]
    >>> scenes = model.sample(batch_size=8, seed=0)
    """

    def __init__(self, image_size=64, num_slots=7, mask_latent_size=64, comp_latent_size=16,
                 pixel_std=0.7, **kwargs):
        super().__init__(image_size=image_size, num_slots=num_slots,
                         mask_latent_size=mask_latent_size, pixel_std=pixel_std, **kwargs)
        self.comp_latent_size = comp_latent_size
        self.component_vae = ComponentVAE(image_size, comp_latent_size, name="component_vae")
        self.component_prior = ComponentPrior(comp_latent_size, name="component_prior")

    def _infer_components(self, images, log_masks, z_mask, training, deterministic, noise):
        batch, num_slots = tf.shape(images)[0], z_mask.shape[1]
        size = self.image_size
        # The component VAE sees all B·K (mask, image) pairs at once, slot-minor.
        flat_log_masks = tf.reshape(log_masks, [-1, size, size, 1])  # [B·K, H, W, 1]
        flat_images = tf.repeat(images, num_slots, axis=0)  # [B·K, H, W, 3]
        mean, scale = self.component_vae.encode(flat_log_masks, flat_images)
        mean, scale = to_float32(mean), to_float32(scale)
        z_comp = mean if deterministic else mean + scale * noise(tf.shape(mean))
        prior_mean, prior_scale = self.component_prior(
            tf.reshape(z_mask, [-1, self.mask_latent_size]))

        def per_slot(t):
            return self._per_slot(t, batch, num_slots)

        return {
            "components": per_slot(self.component_vae.decode(z_comp)),
            "z_comp": per_slot(z_comp),
            "comp_mean": per_slot(mean),
            "comp_scale": per_slot(scale),
            "comp_prior_mean": per_slot(prior_mean),
            "comp_prior_scale": per_slot(prior_scale),
        }

    def _sample_components(self, z_mask, noise):
        batch, num_slots = tf.shape(z_mask)[0], z_mask.shape[1]
        prior_mean, prior_scale = self.component_prior(
            tf.reshape(z_mask, [-1, self.mask_latent_size]))
        prior_mean, prior_scale = to_float32(prior_mean), to_float32(prior_scale)
        z_comp = prior_mean + prior_scale * noise(tf.shape(prior_mean))
        return {
            "components": self._per_slot(self.component_vae.decode(z_comp), batch, num_slots),
            "z_comp": self._per_slot(z_comp, batch, num_slots),
        }

    def _component_latents(self, out):
        return {"component": mean_or_sample(out.comp_mean, out.z_comp)}

    def _component_latent_sizes(self):
        return {"component": self.comp_latent_size}

    def _decode_component_latents(self, latents, z_mask):
        z_comp = latents["component"]
        batch, num_slots = tf.shape(z_comp)[0], z_comp.shape[1]
        flat = tf.reshape(z_comp, [-1, self.comp_latent_size])
        return {"components": self._per_slot(self.component_vae.decode(flat), batch,
                                             num_slots),
                "z_comp": z_comp}

    def _component_kl(self, out):
        posterior = dists.diagonal_gaussian(out.comp_mean, out.comp_scale)
        prior = dists.diagonal_gaussian(out.comp_prior_mean, out.comp_prior_scale)
        return {"kl/l": tf.reduce_sum(dists.monte_carlo_kl(out.z_comp, posterior, prior), 1)}

    def get_config(self):
        return {**super().get_config(), "mask_latent_size": self.mask_latent_size,
                "comp_latent_size": self.comp_latent_size}


class GenesisS(_SequentialSlotModel):
    """GENESIS-S: one latent per slot decoded into both its mask logits and its component.

    Its loss terms are {'err', 'kl/m'}; z_comp and the comp_* fields of its output are None.
    Its one latent group is called 'slot' in latents().
    """

    MASK_GROUP = "slot"

    def __init__(self, image_size=64, num_slots=7, latent_size=64, pixel_std=0.7, **kwargs):
        super().__init__(image_size=image_size, num_slots=num_slots,
                         mask_latent_size=latent_size, pixel_std=pixel_std, **kwargs)
        self.component_decoder = BroadcastDecoder(image_size, out_channels=3, filters=32,
                                                  name="component_decoder")

    def _decode_components(self, z):
        batch, num_slots = tf.shape(z)[0], z.shape[1]
        flat = tf.reshape(z, [-1, self.mask_latent_size])
        return {"components": self._per_slot(self.component_decoder(flat), batch, num_slots)}

    def _infer_components(self, images, log_masks, z_mask, training, deterministic, noise):
        return self._decode_components(z_mask)

    def _sample_components(self, z_mask, noise):
        return self._decode_components(z_mask)

    def _component_kl(self, out):
        return {}

    def _component_latents(self, out):
        return {}

    def _component_latent_sizes(self):
        return {}

    def _decode_component_latents(self, latents, z_mask):
        return self._decode_components(z_mask)

    def get_config(self):
        return {**super().get_config(), "latent_size": self.mask_latent_size}

