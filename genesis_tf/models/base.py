"""What every scene model of genesis_tf provides: the contract training, evaluation and
export rely on.

A scene model is a keras.Model over images ``[B, H, W, 3]``, float32 in [0, 1] (uint8
images are converted by dividing by 255; anything else of the wrong shape is refused with
the expected shape in the message). It provides:

``call(images, training=False, num_slots=None, deterministic=False, seed=None)``
    -> ``SceneOutput`` (genesis_tf/models/output.py). ``num_slots`` overrides K (more
    slots at test time), ``deterministic`` uses posterior means instead of samples,
    ``seed`` (int or int32 scalar tensor) makes the posterior samples reproducible.
``loss_terms(images, out)``
    -> ``{"err": [B], "kl/<name>": [B], ...}`` in nats per image. ``err`` is the
    negative log-likelihood that GECO constrains; the ``kl/*`` terms are summed and
    weighted by GECO's β. The negative ELBO is ``err + Σ kl/*`` (``elbo`` below).
    Summaries show ``kl/<name>`` as ``train/kl_<name>`` (GENESIS: ``train/kl_m``,
    ``train/kl_l``, the reference's names).
``sample(batch_size=8, seed=None, num_slots=None)`` -> ``SceneOutput`` of generated scenes.
``features(images, num_slots=None)`` -> ``[B, F]`` representation for downstream probes.
``latents(out)`` -> ``{group: [B, K, D]}``: the latents of a SceneOutput by group name
    (GENESIS: "mask" and "component"; GENESIS-S: "slot"; MONet: "component"; the VAEs:
    "z" with K = 1), posterior means where the output has them.
``latent_sizes()`` -> ``{group: D}``, the groups ``latents`` returns and their sizes.
``decode(latents)`` -> ``SceneOutput`` (recon, log_masks, components) of such a dict, in
    inference mode: ``decode(latents(model(x, deterministic=True)))`` reconstructs x as
    the forward pass did (MONet: with the masks its component VAE decodes, m̃_k). Latent
    traversals edit one entry and decode.
``build_for_images()`` -> self, with every variable created.
``get_config()`` / ``from_config(config)``: the constructor arguments; a round trip
    gives the same architecture (restoring a run rebuilds its model this way).

Below the contract, the small helpers every model uses (seeded noise, float32 casts, the
checks on ``num_slots`` and on ``decode``'s latents), so that no model imports another's.
"""
import tensorflow as tf
from keras import ops

from genesis_tf.layers import tracking

ERR = "err"
KL_PREFIX = "kl/"


def kl_total(terms):
    """Σ of the ``kl/*`` terms of a loss_terms dict (same shape as each term)."""
    kls = [value for key, value in terms.items() if key.startswith(KL_PREFIX)]
    if not kls:
        raise ValueError(f"loss terms {sorted(terms)} have no '{KL_PREFIX}*' term")
    return tf.add_n(kls)


def elbo(terms):
    """The negative ELBO, err + Σ kl/*, in nats (same shape as each term)."""
    return terms[ERR] + kl_total(terms)


def summary_name(key):
    """'err' -> 'err', 'kl/m' -> 'kl_m': the name a loss term has in summaries."""
    return "kl_" + key[len(KL_PREFIX):] if key.startswith(KL_PREFIX) else key


class SceneModel(tracking.Model):
    """Base class of the scene models; see the module docstring for the contract."""

    # call() takes extra keyword arguments, so Keras's traced default serving signature
    # would break tf.saved_model.save; export code builds its own signatures.
    _default_save_signature = None

    def __init__(self, image_size=64, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size

    def build(self, input_shape=None):
        # Sub-layers build themselves on first call; nothing to create here.
        self.built = True

    def prepare_images(self, images):
        """uint8 or float images [B, S, S, 3] -> float32 in [0, 1]; wrong shapes refused."""
        images = tf.convert_to_tensor(images)
        shape = images.shape
        if shape.rank != 4 or shape[-1] != 3 or (
            shape[1] is not None and (shape[1], shape[2]) != (self.image_size,) * 2
        ):
            raise ValueError(
                f"expected images [B, {self.image_size}, {self.image_size}, 3] (float32 in "
                f"[0, 1] or uint8), got shape {shape}; resize in the input pipeline or build "
                f"the model with image_size={shape[1] if shape.rank == 4 else '...'}"
            )
        if images.dtype == tf.uint8:
            return tf.cast(images, tf.float32) / 255.0
        if not images.dtype.is_floating:
            raise ValueError(
                f"expected float images in [0, 1] or uint8 in [0, 255], got {images.dtype}")
        return tf.cast(images, tf.float32)  # a mixed policy autocasts call inputs

    def build_for_images(self):
        """Creates every variable by one inference pass on a zero image."""
        self(tf.zeros([1, self.image_size, self.image_size, 3]), training=False)
        return self

    def call(self, images, training=False, num_slots=None, deterministic=False, seed=None):
        raise NotImplementedError

    def loss_terms(self, images, out):
        raise NotImplementedError

    def sample(self, batch_size=8, seed=None, num_slots=None):
        raise NotImplementedError

    def features(self, images, num_slots=None):
        raise NotImplementedError

    def latents(self, out):
        raise NotImplementedError

    def latent_sizes(self):
        raise NotImplementedError

    def decode(self, latents):
        raise NotImplementedError

    def get_config(self):
        return {"image_size": self.image_size, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def config_of(model):
    """A JSON-able description of a model: its class name and constructor arguments."""
    return {"class_name": type(model).__name__, "config": model.get_config()}


def from_description(description, classes):
    """Rebuilds a model from ``config_of``'s output; ``classes`` maps names to classes."""
    name = description["class_name"]
    if name not in classes:
        raise ValueError(f"unknown model class {name!r}; known: {sorted(classes)}")
    return classes[name].from_config(dict(description["config"]))


# -- helpers shared by the models ------------------------------------------------------------


class RandomNormal:
    """Standard normal (and uniform) draws: stateless and reproducible when seeded, else
    stateful.

    One instance serves one forward pass; its n-th draw uses the stateless seed
    [seed, n], so a seed gives the same draws in every call, trace and process.

    Why a counter and not TFP's seed tools: ``tfp.util.SeedStream`` refuses tensor seeds
    (training, evaluation and the exported ``generate`` pass int tensors) and yields seeds
    for stateful ops, which repeat no draw across calls; chaining
    ``tfp.random.split_seed`` is reproducible, but under XLA on CPU its second and later
    splits differ from eager ones, so a seeded ``sample`` under ``jit_compile`` would no
    longer match eager (tests/models/test_genesis.py checks that it does).
    """

    def __init__(self, seed=None):
        self.seed = seed
        self.count = 0

    def __call__(self, shape):
        if self.seed is None:
            return tf.random.normal(shape)
        return tf.random.stateless_normal(shape, seed=self._next_seed(), alg="philox")

    def uniform(self, shape):
        """U[0, 1) draws of ``shape``; seeded like the normal draws (same counter)."""
        if self.seed is None:
            return tf.random.uniform(shape)
        return tf.random.stateless_uniform(shape, seed=self._next_seed(), alg="philox")

    def _next_seed(self):
        self.count += 1
        return tf.stack([tf.cast(self.seed, tf.int32), tf.constant(self.count, tf.int32)])


def to_float32(t):
    """``t`` cast to float32: distribution parameters stay float32 under mixed precision."""
    return ops.cast(t, "float32")


def mean_or_sample(mean, sample):
    """The posterior mean where an output has one (inference), else the sample."""
    return sample if mean is None else mean


def check_latent_groups(model, latents):
    """The latents dict of ``decode`` as float32 tensors, with exactly the model's groups."""
    expected = sorted(model.latent_sizes())
    if not isinstance(latents, dict) or sorted(latents) != expected:
        got = sorted(latents) if isinstance(latents, dict) else type(latents).__name__
        raise ValueError(f"{type(model).__name__}.decode needs latents {expected} (as "
                         f"latents(out) returns them), got {got}")
    latents = {name: tf.cast(value, tf.float32) for name, value in latents.items()}
    for name, size in model.latent_sizes().items():
        shape = latents[name].shape
        if shape.rank != 3 or shape[-1] != size:
            raise ValueError(f"latents[{name!r}] must be [B, K, {size}], got {shape}")
    return latents


def check_num_slots(num_slots):
    """``num_slots`` if it is a Python int >= 2 (slots unroll in Python), else ValueError."""
    if not isinstance(num_slots, int) or num_slots < 2:
        raise ValueError(
            f"num_slots must be a Python int >= 2 (one scope split at least), got {num_slots!r}"
        )
    return num_slots


__all__ = ["SceneModel", "config_of", "elbo", "from_description", "kl_total",
           "summary_name"]
