r"""The GENESIS paper's two VAE baselines (appendix B.3): DC-VAE and BD-VAE.

Both are plain VAEs with one latent z ∈ R^D per image (D = 64)::

    p(z) = N(0, I),   p(x | z) = Π_{h,w,c} N(x_{hwc}; μ(z)_{hwc}, σ_x²),  σ_x = 0.7
    q(z | x) = N(μ_q(x), σ_q(x)²)

Encoder (shared): the gated-conv encoder of the GENESIS mask VAE — five gated 5×5 convs
(32, 32, 64, 64, 64 channels, image-size dependent strides, PyTorch padding 2) and a
gated L×L "valid" conv to 256 features — but with no batch norm anywhere (the reference
builds these baselines un-normalised). Two dense heads give μ_q and
σ_q = softplus(· + 0.5) + 1e-8.

Decoders, each followed by a sigmoid so that μ(z) ∈ (0, 1):

* DC-VAE: the gated transposed-conv decoder of the GENESIS mask VAE, un-normalised
  (z as 1×1 → gated L×L transposed conv to 64 → five gated 5×5 transposed convs with
  64, 32, 32, 32, 32 channels), then a 1×1 conv to RGB.
* BD-VAE: a spatial broadcast decoder (z tiled to (H+8)×(W+8) with two coordinate
  channels, four 3×3 valid convs of 64 channels with ELU, a 1×1 conv to 64 with ELU),
  then a 1×1 conv to RGB.

Objective (per image, nats): err = −log p(x | z) summed over pixels and channels;
kl/z = log q(z | x) − log p(z) at the posterior sample (Monte-Carlo, as for GENESIS);
the negative ELBO is err + kl/z.

The models have no slots. To the scene-model contract (genesis_tf/models/base.py) they
present ONE slot whose mask is 1 everywhere: log_masks = 0 [B, 1, H, W, 1], components =
recon[:, None] [B, 1, H, W, 3], and the latent as the slot's component latent: z_comp,
comp_mean, comp_scale [B, 1, D]. The constant mask has no latent: z_mask is None, like
every field a model does not have. ``num_slots`` arguments accept None or 1 only.

Weight correspondence (variable paths under the model's name) with the reference's state
dict (applied-ai-lab/genesis, ``vae.`` prefix; layouts as in SPEC.md's porting notes):
encoder/gated_conv_i ↔ q_z_nn.i (i < 5), encoder/head ↔ q_z_nn.5, posterior_mean ↔
q_z_mean, posterior_scale ↔ q_z_var.0 (the reference maps it to a variance, σ², and samples
with its square root: the same σ). DC-VAE: decoder/stem ↔ p_x_nn.0, decoder/gated_deconv_i
↔ p_x_nn.(i+1), decoder/to_rgb ↔ p_x_mean. BD-VAE: decoder/conv_i ↔ p_x_nn.1.seq.(2i+1),
decoder/hidden_1x1 ↔ p_x_nn.1.seq.9, decoder/out ↔ p_x_mean.
"""
import numbers

import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from genesis_tf import distributions as dists
from genesis_tf.layers import tracking
from genesis_tf.layers.broadcast_decoder import BroadcastDecoder
from genesis_tf.layers.gated_conv import GatedConv2D
from genesis_tf.layers.initializers import TorchConv2D, TorchDense
from genesis_tf.layers.mask_vae import (
    DECODER_CHANNELS,
    ENCODER_CHANNELS,
    KERNEL,
    PAD,
    architecture,
    positive_scale,
)
from genesis_tf.models.base import (
    RandomNormal,
    SceneModel,
    check_latent_groups,
    mean_or_sample,
    to_float32,
)
from genesis_tf.models.output import SceneOutput

tfd = tfp.distributions

FEATURE_SIZE = 256  # width of the encoder's last gated conv, as in the reference


class GatedConvEncoder(tracking.Layer):
    """Image [N, H, W, 3] -> features [N, 256]: the GENESIS mask encoder without batch norm."""

    def __init__(self, image_size=64, feature_size=FEATURE_SIZE, **kwargs):
        super().__init__(**kwargs)
        strides, last_kernel = architecture(image_size)
        self.image_size = image_size
        self.feature_size = feature_size
        self.blocks = [
            GatedConv2D(c, KERNEL, strides=s, padding=PAD, normalize=False,
                        name=f"gated_conv_{i}")
            for i, (c, s) in enumerate(zip(ENCODER_CHANNELS, strides, strict=True))
        ]
        self.head = GatedConv2D(feature_size, last_kernel, normalize=False, name="head")

    def call(self, images):
        x = images
        for block in self.blocks:
            x = block(x)
        return ops.reshape(self.head(x), (-1, self.feature_size))  # [N, 1, 1, F] -> [N, F]


class GatedConvDecoder(tracking.Layer):
    """Latent [N, D] -> pixel means [N, H, W, 3] in (0, 1): the GENESIS mask decoder without
    batch norm, a 1×1 conv to RGB instead of the attention logit, and a sigmoid."""

    def __init__(self, image_size=64, out_channels=3, **kwargs):
        super().__init__(**kwargs)
        strides, first_kernel = architecture(image_size)
        self.image_size = image_size
        self.stem = GatedConv2D(DECODER_CHANNELS[0], first_kernel, transpose=True,
                                normalize=False, name="stem")
        self.blocks = [
            GatedConv2D(c, KERNEL, strides=s, padding=PAD, output_padding=s - 1,
                        transpose=True, normalize=False, name=f"gated_deconv_{i}")
            for i, (c, s) in enumerate(zip(DECODER_CHANNELS, strides[::-1], strict=True))
        ]
        self.to_rgb = TorchConv2D(out_channels, 1, name="to_rgb")

    def call(self, z):
        x = ops.reshape(z, (-1, 1, 1, ops.shape(z)[-1]))  # [N, 1, 1, D]
        x = self.stem(x)  # [N, L, L, 64]
        for block in self.blocks:
            x = block(x)
        return ops.sigmoid(self.to_rgb(x))  # [N, H, W, 3]


class _SingleLatentVAE(SceneModel):
    """What DC-VAE and BD-VAE share: encoder, posterior, likelihood, prior and the
    one-slot presentation. Subclasses supply ``_make_decoder``."""

    num_slots = 1  # No slots: one "slot" covering the whole image (export reads this).

    def __init__(self, image_size=64, latent_size=64, pixel_std=0.7, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        architecture(image_size)  # Fails early with the supported sizes.
        self.latent_size = latent_size
        self.pixel_std = pixel_std
        self.encoder = GatedConvEncoder(image_size, name="encoder")
        self.posterior_mean = TorchDense(latent_size, name="posterior_mean")
        self.posterior_scale = TorchDense(latent_size, name="posterior_scale")
        self.decoder = self._make_decoder()

    def _make_decoder(self):
        """-> a layer mapping z [N, D] to pixel means [N, H, W, 3] in (0, 1)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------

    def call(self, images, training=False, num_slots=None, deterministic=False, seed=None):
        """Encodes and reconstructs images [B, H, W, 3]; returns a one-slot SceneOutput.

        num_slots: None or 1 (there are no slots). deterministic: decode the posterior mean
        instead of a sample. seed: int for a reproducible posterior sample.
        """
        self._check_slots(num_slots)
        images = self.prepare_images(images)
        mean, scale = self._encode(images)
        z = mean if deterministic else mean + scale * RandomNormal(seed)(tf.shape(mean))
        return self._scene(self._decode(z), z=z, mean=mean, scale=scale)

    def loss_terms(self, images, out):
        """{'err', 'kl/z'}, each [B] in nats; −ELBO = err + kl/z."""
        images = self.prepare_images(images)
        likelihood = tfd.Independent(
            tfd.Normal(loc=to_float32(out.recon), scale=tf.cast(self.pixel_std, tf.float32)),
            reinterpreted_batch_ndims=3)
        err = -likelihood.log_prob(images)
        z = out.z_comp[:, 0]
        posterior = dists.diagonal_gaussian(out.comp_mean[:, 0], out.comp_scale[:, 0])
        kl = dists.monte_carlo_kl(z, posterior, dists.standard_normal_like(z))
        return {"err": err, "kl/z": kl}

    def sample(self, batch_size=8, seed=None, num_slots=None):
        """Generates images from z ~ N(0, I) (stateless when seeded); a one-slot SceneOutput."""
        self._check_slots(num_slots)
        batch_size = tf.convert_to_tensor(batch_size, tf.int32)
        z = RandomNormal(seed)(tf.stack([batch_size, self.latent_size]))
        return self._scene(self._decode(z), z=z)

    def features(self, images, num_slots=None):
        """The posterior mean [B, D] (no decoding)."""
        self._check_slots(num_slots)
        mean, _ = self._encode(self.prepare_images(images))
        return mean

    def latents(self, out):
        """{'z': [B, 1, D]}: the posterior mean where ``out`` has it, else the sample."""
        return {"z": mean_or_sample(out.comp_mean, out.z_comp)}

    def latent_sizes(self):
        return {"z": self.latent_size}

    def decode(self, latents):
        """Images from latents {'z': [B, 1, D]}; a one-slot SceneOutput."""
        z = check_latent_groups(self, latents)["z"]
        if z.shape[1] != 1:
            raise ValueError(f"{type(self).__name__} has one latent per image: latents['z'] "
                             f"must be [B, 1, {self.latent_size}], got {z.shape}")
        return self._scene(self._decode(z[:, 0]), z=z[:, 0])

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "pixel_std": self.pixel_std}

    # -- pieces ---------------------------------------------------------------------------

    def _encode(self, images):
        """images [B, H, W, 3] -> (mean, scale) of q(z | x), each [B, D] float32."""
        features = self.encoder(images)
        mean = self.posterior_mean(features)
        scale = positive_scale(self.posterior_scale(features))
        return to_float32(mean), to_float32(scale)

    def _decode(self, z):
        """z [B, D] -> pixel means [B, H, W, 3] float32."""
        return to_float32(self.decoder(z))

    def _scene(self, recon, z, mean=None, scale=None):
        """The one-slot SceneOutput: the mask is 1 everywhere and the only component is
        the reconstruction itself."""
        one_slot = (lambda t: None if t is None else t[:, None])  # [B, ...] -> [B, 1, ...]
        return SceneOutput(
            recon=recon,
            log_masks=tf.zeros_like(recon[:, None, :, :, :1]),  # [B, 1, H, W, 1]
            components=recon[:, None],
            z_comp=one_slot(z),
            comp_mean=one_slot(mean),
            comp_scale=one_slot(scale),
        )

    def _check_slots(self, num_slots):
        if num_slots is None or (isinstance(num_slots, numbers.Integral)
                                 and not isinstance(num_slots, bool) and num_slots == 1):
            return 1
        raise ValueError(
            f"{type(self).__name__} has one latent per image and no slots: num_slots must "
            f"be None or 1, got {num_slots!r}")


class DCVAE(_SingleLatentVAE):
    """DC-VAE: gated-conv encoder and gated transposed-conv decoder, no batch norm.

    >>> model = DCVAE(image_size=64)
    >>> out = model(images, training=True)        # images [B, 64, 64, 3] in [0, 1]
    >>> terms = model.loss_terms(images, out)     # {'err', 'kl/z'}: each [B]
    >>> scenes = model.sample(batch_size=8, seed=0)
    """

    def _make_decoder(self):
        return GatedConvDecoder(self.image_size, name="decoder")


class BDVAE(_SingleLatentVAE):
    """BD-VAE: gated-conv encoder (no batch norm) and a spatial broadcast decoder.

    Same interface as DCVAE.
    """

    def _make_decoder(self):
        return BroadcastDecoder(self.image_size, out_channels=3, filters=64, num_convs=4,
                                activation="elu", hidden_1x1=64, output_activation="sigmoid",
                                name="decoder")


__all__ = ["BDVAE", "DCVAE", "GatedConvDecoder", "GatedConvEncoder"]
