"""MONet: sizes against the reference, the attention recurrence, loss terms recomputed in
NumPy/SciPy, sampling, the contract, learning and checkpoints."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

from genesis_tf.models.base import config_of, elbo, from_description
from genesis_tf.models.monet import MONet, mask_kl

SIZE, SLOTS, LATENT = 32, 3, 16


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    model = MONet(image_size=SIZE, num_slots=SLOTS).build_for_images()
    images = tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[1, 2])
    return model, images


def assert_partition(log_masks, num_slots, batch=2, size=SIZE):
    assert log_masks.shape == (batch, num_slots, size, size, 1)
    assert log_masks.dtype == tf.float32
    masks_sum = np.sum(np.exp(log_masks.numpy().astype(np.float64)), axis=1)
    np.testing.assert_allclose(masks_sum, 1.0, atol=1e-5)
    assert np.all(log_masks.numpy() <= 1e-6)


# -- sizes ---------------------------------------------------------------------------------


def test_parameter_count_matches_the_reference_at_64_with_5_slots():
    model = MONet(image_size=64, num_slots=5).build_for_images()
    assert count(model.trainable_variables) == 974_085
    assert count(model.attention.trainable_variables) == 604_513
    assert count(model.component_vae.trainable_variables) == 369_572
    assert count(model.non_trainable_variables) == 0  # no running statistics anywhere
    # The component VAE's layers, in the reference's (PyTorch) shapes transposed.
    encoder, decoder = model.component_vae.encoder, model.component_vae.decoder
    conv_shapes = [tuple(c.kernel.shape) for c in encoder.convs]
    assert conv_shapes == [(3, 3, 4, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 64)]
    assert tuple(encoder.hidden.kernel.shape) == (1024, 256)
    assert tuple(encoder.head.kernel.shape) == (256, 2 * 16)
    dec_shapes = [tuple(c.kernel.shape) for c in decoder.convs]
    assert dec_shapes == [(3, 3, 18, 32)] + [(3, 3, 32, 32)] * 3
    assert tuple(decoder.out.kernel.shape) == (1, 1, 32, 4)
    relu = keras.activations.relu
    assert all(c.activation is relu for c in encoder.convs + decoder.convs)
    assert encoder.hidden.activation is relu


# -- the forward pass ----------------------------------------------------------------------


def test_forward_shapes_and_partition(small):
    model, images = small
    out = model(images)
    assert_partition(out.log_masks, SLOTS)
    assert out.recon.shape == (2, SIZE, SIZE, 3)
    assert out.components.shape == (2, SLOTS, SIZE, SIZE, 3)
    assert out.decoded_mask_logits.shape == (2, SLOTS, SIZE, SIZE, 1)
    for field in (out.z_comp, out.comp_mean, out.comp_scale):
        assert field.shape == (2, SLOTS, LATENT)
    assert out.z_mask is None and out.comp_prior_mean is None
    components = out.components.numpy()
    assert np.all((components > 0) & (components < 1))  # sigmoid RGB means
    expected = np.sum(np.exp(out.log_masks.numpy()) * components, axis=1)
    np.testing.assert_allclose(out.recon.numpy(), expected, atol=1e-5)


def test_more_slots_at_test_time(small):
    model, images = small
    out = model(images, num_slots=SLOTS + 2)
    assert_partition(out.log_masks, SLOTS + 2)
    assert out.z_comp.shape == (2, SLOTS + 2, LATENT)
    # The first K−1 attention steps do not depend on K.
    fewer = model(images, num_slots=SLOTS)
    np.testing.assert_allclose(out.log_masks[:, : SLOTS - 1].numpy(),
                               fewer.log_masks[:, : SLOTS - 1].numpy(), atol=1e-6)


def test_attention_recurrence_by_hand(small):
    model, images = small
    out = model(images, num_slots=3)

    def alpha(log_scope):
        logits = model.attention.logits(images, tf.constant(log_scope, tf.float32))
        return special.expit(logits.numpy().astype(np.float64))

    alpha_1 = alpha(np.zeros([2, SIZE, SIZE, 1]))  # scope s_0 = 1
    alpha_2 = alpha(np.log(1.0 - alpha_1))  # scope s_1 = 1 − α_1
    masks = np.stack([alpha_1, alpha_2 * (1 - alpha_1), (1 - alpha_2) * (1 - alpha_1)], 1)
    np.testing.assert_allclose(np.exp(out.log_masks.numpy()), masks, atol=1e-5)


def test_component_vae_reads_each_slots_mask(small):
    model, images = small
    out = model(images, deterministic=True)
    for k in range(SLOTS):
        mean, scale = model.component_vae.encode(out.log_masks[:, k], images)
        np.testing.assert_allclose(out.comp_mean[:, k].numpy(), mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(out.comp_scale[:, k].numpy(), scale.numpy(), atol=1e-5)
        rgb, logits = model.component_vae.decode(mean)
        np.testing.assert_allclose(out.components[:, k].numpy(), rgb.numpy(), atol=1e-5)
        np.testing.assert_allclose(out.decoded_mask_logits[:, k].numpy(), logits.numpy(),
                                   atol=1e-5)


def test_posterior_samples_are_seeded_and_deterministic_uses_means(small):
    model, images = small
    a = model(images, seed=5).z_comp.numpy()
    b = model(images, seed=5).z_comp.numpy()
    c = model(images, seed=6).z_comp.numpy()
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3
    out = model(images, deterministic=True)
    np.testing.assert_array_equal(out.z_comp.numpy(), out.comp_mean.numpy())


def test_uint8_images_are_scaled(small):
    model, _ = small
    pixels = tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[3, 3], maxval=256,
                                         dtype=tf.int32)
    as_uint8 = model(tf.cast(pixels, tf.uint8), deterministic=True)
    as_float = model(tf.cast(pixels, tf.float32) / 255.0, deterministic=True)
    np.testing.assert_allclose(as_uint8.recon.numpy(), as_float.recon.numpy(), atol=1e-6)


# -- the loss terms, recomputed independently ----------------------------------------------


def numpy_mask_kl(log_masks, decoded_logits, floor=1e-5):
    """The reference's recipe: clamp probabilities at ``floor``, renormalise, KL per pixel."""
    q = np.maximum(np.exp(log_masks), floor)
    p = np.maximum(special.softmax(decoded_logits, axis=1), floor)
    q, p = q / q.sum(1, keepdims=True), p / p.sum(1, keepdims=True)
    return np.sum(q * (np.log(q) - np.log(p)), axis=(1, 2, 3, 4))


@pytest.mark.parametrize("num_slots", [SLOTS, SLOTS + 2])
def test_loss_terms_equal_a_numpy_computation(small, num_slots):
    model, images = small
    out = model(images, num_slots=num_slots, seed=11)
    terms = model.loss_terms(images, out)
    assert sorted(terms) == ["err", "kl/mask", "kl/z"]
    assert all(t.shape == (2,) for t in terms.values())

    x = images.numpy().astype(np.float64)[:, None]  # [B, 1, H, W, 3]
    log_masks = out.log_masks.numpy().astype(np.float64)
    means = out.components.numpy().astype(np.float64)
    sigma = np.array([0.09] + [0.11] * (num_slots - 1)).reshape(1, -1, 1, 1, 1)
    per_slot = log_masks + stats.norm.logpdf(x, means, sigma)  # [B, K, H, W, 3]
    err = -np.sum(special.logsumexp(per_slot, axis=1), axis=(1, 2, 3))
    np.testing.assert_allclose(terms["err"].numpy(), err, rtol=1e-5)

    z, mu, scale = (t.numpy().astype(np.float64) for t in (out.z_comp, out.comp_mean,
                                                            out.comp_scale))
    kl_z = np.sum(stats.norm.logpdf(z, mu, scale) - stats.norm.logpdf(z), axis=(1, 2))
    np.testing.assert_allclose(terms["kl/z"].numpy(), kl_z, rtol=1e-4, atol=1e-4)

    kl_mask = numpy_mask_kl(log_masks, out.decoded_mask_logits.numpy().astype(np.float64))
    np.testing.assert_allclose(terms["kl/mask"].numpy(), kl_mask, rtol=1e-4, atol=1e-4)
    # The negative ELBO sums all three.
    np.testing.assert_allclose(elbo(terms).numpy(), err + kl_z + kl_mask, rtol=1e-5)


def test_likelihood_uses_the_first_slots_own_scale(small):
    model, images = small
    out = model(images, seed=1)
    same = MONet(image_size=SIZE, num_slots=SLOTS, pixel_std=0.11, first_pixel_std=0.11)
    err_first = model.loss_terms(images, out)["err"].numpy()
    err_same = same.loss_terms(images, out)["err"].numpy()
    assert np.all(np.abs(err_first - err_same) > 1.0)


def test_mask_kl_clamps_at_1e5_like_the_reference():
    rng = np.random.default_rng(3)
    # Extreme logits: many masks and decoded masks far below 1e-5.
    log_masks = special.log_softmax(rng.normal(0, 20, [2, 4, 5, 5, 1]), axis=1)
    logits = rng.normal(0, 30, [2, 4, 5, 5, 1])
    got = mask_kl(tf.constant(log_masks, tf.float32), tf.constant(logits, tf.float32))
    expected = numpy_mask_kl(log_masks, logits)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    # The clamp matters here: without it the KL is much larger.
    log_p = special.log_softmax(logits, axis=1)
    unclamped = np.sum(np.exp(log_masks) * (log_masks - log_p), axis=(1, 2, 3, 4))
    assert np.all(unclamped > 1.5 * expected)
    # Equal distributions give zero.
    same = mask_kl(tf.constant(log_masks, tf.float32), tf.constant(log_masks, tf.float32))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-4)


# -- sampling, features, config ------------------------------------------------------------


def test_sample_is_seeded_and_normalised(small):
    model, _ = small
    a, b, c = model.sample(4, seed=3), model.sample(4, seed=3), model.sample(4, seed=4)
    np.testing.assert_array_equal(a.recon.numpy(), b.recon.numpy())
    np.testing.assert_array_equal(a.z_comp.numpy(), b.z_comp.numpy())
    assert np.max(np.abs(a.recon.numpy() - c.recon.numpy())) > 1e-4
    assert np.max(np.abs(a.z_comp.numpy() - c.z_comp.numpy())) > 1e-2
    assert_partition(a.log_masks, SLOTS, batch=4)
    logits = a.decoded_mask_logits.numpy().astype(np.float64)
    np.testing.assert_allclose(a.log_masks.numpy(), special.log_softmax(logits, axis=1),
                               atol=1e-5)
    expected = np.sum(special.softmax(logits, axis=1) * a.components.numpy(), axis=1)
    np.testing.assert_allclose(a.recon.numpy(), expected, atol=1e-5)
    # Each slot's latent is decoded by the component decoder alone.
    rgb, _ = model.component_vae.decode(a.z_comp[:, 1])
    np.testing.assert_allclose(a.components[:, 1].numpy(), rgb.numpy(), atol=1e-5)
    more = model.sample(2, seed=3, num_slots=SLOTS + 2)
    assert_partition(more.log_masks, SLOTS + 2)
    assert model.sample(2).recon.shape == (2, SIZE, SIZE, 3)  # unseeded


def test_sampled_latents_are_independent_standard_normals(small):
    model, _ = small
    z = model.sample(64, seed=8).z_comp.numpy()  # [64, K, D]
    assert z.shape == (64, SLOTS, LATENT)
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1.0) < 0.1
    # Slots are not copies or correlated draws of one another.
    for j in range(1, SLOTS):
        corr = np.corrcoef(z[:, 0].ravel(), z[:, j].ravel())[0, 1]
        assert abs(corr) < 0.1


def test_features_are_the_posterior_means(small):
    model, images = small
    features = model.features(images)
    assert features.shape == (2, SLOTS * LATENT)
    means = model(images, deterministic=True).comp_mean.numpy().reshape(2, -1)
    np.testing.assert_allclose(features.numpy(), means, atol=1e-6)
    assert model.features(images, num_slots=SLOTS + 2).shape == (2, (SLOTS + 2) * LATENT)


def test_config_round_trip():
    model = MONet(image_size=SIZE, num_slots=4, latent_size=8, pixel_std=0.7,
                  first_pixel_std=0.7, filter_start=16, name="monet_x")
    config = model.get_config()
    assert config == {"image_size": SIZE, "name": "monet_x", "num_slots": 4,
                      "latent_size": 8, "pixel_std": 0.7, "first_pixel_std": 0.7,
                      "filter_start": 16}
    clone = MONet.from_config(config)
    assert clone.get_config() == config
    again = from_description(config_of(model), {"MONet": MONet})
    assert again.get_config() == config
    shapes = [[tuple(v.shape) for v in m.build_for_images().variables]
              for m in (model, clone, again)]
    assert shapes[0] == shapes[1] == shapes[2]
    assert model(tf.zeros([1, SIZE, SIZE, 3])).z_comp.shape == (1, 4, 8)


def test_unsupported_sizes_and_slots_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        MONet(image_size=48)
    with pytest.raises(ValueError, match="num_slots"):
        MONet(image_size=SIZE, num_slots=1)


# -- learning and checkpoints --------------------------------------------------------------


def scenes(batch=4, size=SIZE):
    """A fixed batch: a coloured background with one coloured square each."""
    rng = np.random.default_rng(0)
    images = np.ones([batch, size, size, 3], np.float32) * rng.uniform(0, 1, [batch, 1, 1, 3])
    for b in range(batch):
        top, left = rng.integers(0, size - 12, 2)
        images[b, top:top + 12, left:left + 12] = rng.uniform(0, 1, 3)
    return tf.constant(images.astype(np.float32))


def test_adam_lowers_the_loss_on_a_fixed_batch():
    keras.utils.set_random_seed(1)
    model = MONet(image_size=SIZE, num_slots=SLOTS).build_for_images()
    images = scenes()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)

    def loss_of(seed):
        return tf.reduce_mean(elbo(model.loss_terms(images, model(images, seed=seed))))

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = loss_of(seed)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    before = float(loss_of(0))
    for i in range(30):
        loss = step(tf.constant(i + 1))
        assert np.isfinite(float(loss))
    after = float(loss_of(0))
    assert after < 0.8 * before, (before, after)


def test_checkpoint_round_trip(tmp_path, small):
    model, images = small
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(saved) == len(model.variables)
    saved_shapes = sorted(tuple(shape) for name, shape in tf.train.list_variables(path)
                          if name in saved)
    assert saved_shapes == sorted(tuple(v.shape) for v in model.variables)

    fresh = MONet.from_config(model.get_config()).build_for_images()
    expected = model(images, seed=2)
    before = fresh(images, seed=2)
    assert np.max(np.abs(before.recon.numpy() - expected.recon.numpy())) > 1e-4
    tf.train.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    restored = fresh(images, seed=2)
    for name in ("recon", "log_masks", "components", "z_comp", "decoded_mask_logits"):
        np.testing.assert_array_equal(getattr(restored, name).numpy(),
                                      getattr(expected, name).numpy())
    for a, b in zip(model.variables, fresh.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
