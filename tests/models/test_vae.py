"""DC-VAE and BD-VAE (GENESIS paper, appendix B.3) behind the scene-model contract."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from genesis_tf import distributions as dists
from genesis_tf.models.base import elbo
from genesis_tf.models.vae import BDVAE, DCVAE

MODELS = [DCVAE, BDVAE]
SIZE = 32


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def images_batch(batch=2, seed=(1, 2)):
    return tf.random.stateless_uniform([batch, SIZE, SIZE, 3], seed=seed)


# -- architecture at 64×64 against the reference ---------------------------------------------

# The reference's weights at 64×64 (reference_state_dicts.md), by the Keras variable that
# holds each, with PyTorch shapes; `kind` gives the layout conversion to Keras.
ENCODER = {
    "encoder/gated_conv_0/conv": ("conv", (64, 3, 5, 5)),
    "encoder/gated_conv_1/conv": ("conv", (64, 32, 5, 5)),
    "encoder/gated_conv_2/conv": ("conv", (128, 32, 5, 5)),
    "encoder/gated_conv_3/conv": ("conv", (128, 64, 5, 5)),
    "encoder/gated_conv_4/conv": ("conv", (128, 64, 5, 5)),
    "encoder/head/conv": ("conv", (512, 64, 16, 16)),
    "posterior_mean": ("dense", (64, 256)),
    "posterior_scale": ("dense", (64, 256)),
}
REFERENCE = {
    DCVAE: {
        **ENCODER,
        "decoder/stem/conv": ("transpose", (64, 128, 16, 16)),
        "decoder/gated_deconv_0/conv": ("transpose", (64, 128, 5, 5)),
        "decoder/gated_deconv_1/conv": ("transpose", (64, 64, 5, 5)),
        "decoder/gated_deconv_2/conv": ("transpose", (32, 64, 5, 5)),
        "decoder/gated_deconv_3/conv": ("transpose", (32, 64, 5, 5)),
        "decoder/gated_deconv_4/conv": ("transpose", (32, 64, 5, 5)),
        "decoder/to_rgb": ("conv", (3, 32, 1, 1)),
    },
    BDVAE: {
        **ENCODER,
        "decoder/conv_0": ("conv", (64, 66, 3, 3)),
        "decoder/conv_1": ("conv", (64, 64, 3, 3)),
        "decoder/conv_2": ("conv", (64, 64, 3, 3)),
        "decoder/conv_3": ("conv", (64, 64, 3, 3)),
        "decoder/hidden_1x1": ("conv", (64, 64, 1, 1)),
        "decoder/out": ("conv", (3, 64, 1, 1)),
    },
}


def keras_shapes(kind, torch_shape):
    """(kernel shape, bias shape) in Keras layout for a PyTorch weight shape."""
    if kind == "dense":
        out, inp = torch_shape
        return (inp, out), (out,)
    a, b, kh, kw = torch_shape
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return (kh, kw, b, a), (a,)
    return (kh, kw, b, a), (b,)  # transposed (in, out, kh, kw) -> (kh, kw, out, in)


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def full_model(request):
    return request.param(image_size=64).build_for_images()


def test_parameter_count_matches_the_reference(full_model):
    expected = {DCVAE: 11_549_091, BDVAE: 9_143_747}[type(full_model)]
    assert count(full_model.trainable_variables) == expected
    # Un-normalised everywhere: no batch norm, hence no non-trainable statistics.
    assert not full_model.non_trainable_variables


def test_every_weight_has_the_reference_shape(full_model):
    prefix = full_model.name + "/"
    actual = {v.path[len(prefix):]: tuple(v.shape) for v in full_model.variables}
    expected = {}
    for layer, (kind, torch_shape) in REFERENCE[type(full_model)].items():
        kernel, bias = keras_shapes(kind, torch_shape)
        expected[f"{layer}/kernel"], expected[f"{layer}/bias"] = kernel, bias
    assert actual == expected


def test_full_size_output_shapes(full_model):
    out = full_model(tf.zeros([1, 64, 64, 3]))
    assert out.recon.shape == (1, 64, 64, 3)
    assert out.components.shape == (1, 1, 64, 64, 3)


def test_unsupported_image_size_is_refused():
    with pytest.raises(ValueError, match="image_size 48 is not supported"):
        DCVAE(image_size=48)


# -- the one-slot contract --------------------------------------------------------------------

@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def small(request):
    return request.param(image_size=SIZE).build_for_images()


def assert_one_slot(out, batch, latent=64):
    assert out.recon.shape == (batch, SIZE, SIZE, 3)
    assert out.log_masks.shape == (batch, 1, SIZE, SIZE, 1)
    assert out.components.shape == (batch, 1, SIZE, SIZE, 3)
    np.testing.assert_array_equal(tf.exp(out.log_masks).numpy(), 1.0)
    np.testing.assert_array_equal(out.components[:, 0].numpy(), out.recon.numpy())
    recon = out.recon.numpy()
    assert np.all((recon > 0) & (recon < 1))  # sigmoid means
    assert out.z_comp.shape == (batch, 1, latent)
    for name in ("z_mask", "mask_logits", "mask_mean", "mask_scale", "mask_prior_mean",
                 "mask_prior_scale", "comp_prior_mean", "comp_prior_scale"):
        assert getattr(out, name) is None, name


def test_forward_is_one_slot_scene(small):
    assert small.num_slots == 1
    out = small(images_batch(3), training=True, seed=5)
    assert_one_slot(out, 3)
    assert out.comp_mean.shape == out.comp_scale.shape == (3, 1, 64)
    assert np.all(out.comp_scale.numpy() > 0)
    # The sample is a reparameterised draw, not the mean; deterministic gives the mean.
    assert not np.allclose(out.z_comp.numpy(), out.comp_mean.numpy())
    mean_out = small(images_batch(3), deterministic=True)
    np.testing.assert_array_equal(mean_out.z_comp.numpy(), mean_out.comp_mean.numpy())


def test_samples_are_one_slot_scenes_reproducible_with_a_seed(small):
    a = small.sample(batch_size=4, seed=11)
    assert_one_slot(a, 4)
    b = small.sample(batch_size=4, seed=11)
    c = small.sample(batch_size=4, seed=12)
    np.testing.assert_array_equal(a.recon.numpy(), b.recon.numpy())
    np.testing.assert_array_equal(a.z_comp.numpy(), b.z_comp.numpy())
    assert not np.allclose(a.z_comp.numpy(), c.z_comp.numpy())
    # (An untrained DC-VAE decodes every z to almost the same image: compare exactly.)
    assert not np.array_equal(a.recon.numpy(), c.recon.numpy())
    # Prior draws: N(0, I) (64·4 values, loose moments), decoded by the decoder.
    z = a.z_comp.numpy()
    assert abs(z.mean()) < 0.3 and 0.7 < z.std() < 1.3
    np.testing.assert_allclose(a.recon.numpy(), small.decoder(z[:, 0]).numpy(), atol=1e-6)
    # Unseeded sampling works and is random.
    u, v = small.sample(batch_size=2), small.sample(batch_size=2)
    assert not np.allclose(u.z_comp.numpy(), v.z_comp.numpy())


def test_posterior_samples_are_reproducible_with_a_seed(small):
    x = images_batch(2)
    a, b = small(x, seed=3), small(x, seed=3)
    c = small(x, seed=4)
    np.testing.assert_array_equal(a.z_comp.numpy(), b.z_comp.numpy())
    assert not np.allclose(a.z_comp.numpy(), c.z_comp.numpy())


def test_features_are_posterior_means(small):
    x = images_batch(2)
    features = small.features(x)
    assert features.shape == (2, 64)
    out = small(x, deterministic=True)
    np.testing.assert_allclose(features.numpy(), out.comp_mean[:, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["function", "xla"])
def test_compiled_functions_match_eager_and_batch_size_is_not_baked_in(small, jit):
    def forward(x):
        out = small(x, deterministic=True)
        terms = small.loss_terms(x, out)
        return out.recon, terms["err"], terms["kl/z"], small.features(x)

    compiled = tf.function(forward, jit_compile=jit,
                           input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    x = images_batch(2)
    for e, g in zip(forward(x), compiled(x), strict=True):
        np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-4, atol=1e-3)
    assert compiled(tf.concat([x, x, x], 0))[0].shape[0] == 6
    assert compiled.experimental_get_tracing_count() == 1
    # Seeded prior samples with a tensor batch size: the eager draws (graph mode).
    if not jit:
        sample = tf.function(lambda n: small.sample(batch_size=n, seed=5).recon)
        np.testing.assert_allclose(sample(tf.constant(2)).numpy(),
                                   small.sample(batch_size=2, seed=5).recon.numpy(), atol=1e-5)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_other_slot_counts_are_refused(cls):
    model = cls(image_size=SIZE)
    x = images_batch(1)
    assert model(x, num_slots=1).recon.shape == (1, SIZE, SIZE, 3)
    assert model.sample(batch_size=1, num_slots=1).recon.shape == (1, SIZE, SIZE, 3)
    assert model.features(x, num_slots=1).shape == (1, 64)
    message = f"{cls.__name__} has one latent per image and no slots: num_slots must be None"
    for call in (lambda: model(x, num_slots=2), lambda: model.sample(2, num_slots=2),
                 lambda: model.features(x, num_slots=2), lambda: model(x, num_slots=0)):
        with pytest.raises(ValueError, match=message):
            call()


# -- loss terms ---------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_loss_terms_match_an_independent_computation(small, training):
    x = images_batch(3, seed=(7, 7))
    out = small(x, training=training, seed=9)
    terms = small.loss_terms(x, out)
    assert sorted(terms) == ["err", "kl/z"]
    for value in terms.values():
        assert value.shape == (3,)
    xs, recon = x.numpy().astype(np.float64), out.recon.numpy().astype(np.float64)
    err = -stats.norm.logpdf(xs, loc=recon, scale=0.7).sum(axis=(1, 2, 3))
    z = out.z_comp.numpy()[:, 0].astype(np.float64)
    mean = out.comp_mean.numpy()[:, 0].astype(np.float64)
    scale = out.comp_scale.numpy()[:, 0].astype(np.float64)
    kl = (stats.norm.logpdf(z, mean, scale) - stats.norm.logpdf(z)).sum(axis=1)
    np.testing.assert_allclose(terms["err"].numpy(), err, rtol=1e-5)
    np.testing.assert_allclose(terms["kl/z"].numpy(), kl, rtol=1e-4, atol=1e-3)
    # One slot with mask 1: the GENESIS mixture likelihood reduces to this Gaussian.
    mixture = dists.reconstruction_error(x, out.log_masks, out.components, 0.7)
    np.testing.assert_allclose(terms["err"].numpy(), mixture.numpy(), rtol=1e-5)
    np.testing.assert_allclose(elbo(terms).numpy(), err + kl, rtol=1e-4)


def test_loss_uses_the_configured_pixel_std():
    model = DCVAE(image_size=SIZE, pixel_std=0.3)
    x = images_batch(2)
    out = model(x, seed=1)
    expected = -stats.norm.logpdf(x.numpy(), out.recon.numpy(), 0.3).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(model.loss_terms(x, out)["err"].numpy(), expected, rtol=1e-5)


# -- configuration and checkpoints -------------------------------------------------------

@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    kwargs = dict(image_size=SIZE, latent_size=16, pixel_std=0.5)
    model = cls(**kwargs)
    config = model.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    copy = cls.from_config(config)
    assert type(copy) is cls and copy.get_config() == config
    assert copy.latent_size == 16 and copy.pixel_std == 0.5 and copy.num_slots == 1
    model.build_for_images()
    copy.build_for_images()
    assert [(v.path, tuple(v.shape)) for v in model.weights] == [
        (v.path, tuple(v.shape)) for v in copy.weights]
    assert copy.features(images_batch(1)).shape == (1, 16)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_checkpoint_restores_every_variable_into_a_fresh_model(cls, tmp_path):
    model = cls(image_size=SIZE).build_for_images()
    # Move every variable off its initial value, so that a restore that misses one shows.
    for v in model.variables:
        v.assign(v + tf.random.stateless_uniform(v.shape, seed=[0, len(v.path)]) * 0.01)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    fresh = cls(image_size=SIZE).build_for_images()
    assert len(fresh.variables) == len(model.variables)
    x = images_batch(2)
    before = fresh(x, deterministic=True).recon.numpy()
    assert not np.allclose(before, model(x, deterministic=True).recon.numpy())
    status = tf.train.Checkpoint(model=fresh).read(path)
    status.assert_existing_objects_matched()
    saved = {name for name, _ in tf.train.list_variables(path)}
    assert sum(name.startswith("model/") and name.endswith(".ATTRIBUTES/VARIABLE_VALUE")
               for name in saved) == len(model.variables)
    for restored, original in zip(fresh.variables, model.variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy(), err_msg=restored.path)
    for seed in (None, 5):
        a = model(x, deterministic=seed is None, seed=seed)
        b = fresh(x, deterministic=seed is None, seed=seed)
        np.testing.assert_array_equal(a.recon.numpy(), b.recon.numpy())
        np.testing.assert_array_equal(a.z_comp.numpy(), b.z_comp.numpy())
    np.testing.assert_array_equal(model.sample(2, seed=4).recon.numpy(),
                                  fresh.sample(2, seed=4).recon.numpy())


# -- learning ------------------------------------------------------------------------------

def _negative_elbo(model, images):
    """Mean negative ELBO at a fixed posterior noise, less its floor HWC·½log(2πσ²)."""
    terms = model.loss_terms(images, model(images, seed=0))
    floor = SIZE * SIZE * 3 * 0.5 * np.log(2 * np.pi * 0.7**2)
    return float(tf.reduce_mean(elbo(terms))) - floor


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_thirty_adam_steps_lower_the_negative_elbo(cls):
    keras.utils.set_random_seed(3)
    model = cls(image_size=SIZE).build_for_images()
    # A fixed small batch of structured images: a coloured square on a coloured ground.
    rng = np.random.default_rng(0)
    images = np.empty((4, SIZE, SIZE, 3), np.float32)
    for i in range(4):
        images[i] = rng.uniform(size=3)
        y, x = rng.integers(0, SIZE - 12, size=2)
        images[i, y:y + 12, x:x + 12] = rng.uniform(size=3)
    images = tf.constant(images)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            terms = model.loss_terms(images, model(images, training=True, seed=seed))
            loss = tf.reduce_mean(terms["err"] + terms["kl/z"])
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    before = _negative_elbo(model, images)
    losses = [float(step(tf.constant(s))) for s in range(30)]
    after = _negative_elbo(model, images)
    assert all(np.isfinite(losses))
    # Measured: DC-VAE 295 -> 217, BD-VAE 292 -> 166 nats above the floor.
    assert after < 0.85 * before, (before, after, losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
