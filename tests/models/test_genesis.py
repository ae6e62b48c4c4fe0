"""GENESIS and GENESIS-S: sizes, partitions, shapes, execution modes, and learning."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.geco import GECO
from genesis_tf.models import Genesis, GenesisS
from genesis_tf.training import make_train_step


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


@pytest.fixture(scope="module")
def full_genesis():
    return Genesis(image_size=64, num_slots=7).build_for_images()


def test_genesis_parameter_count_matches_the_reference_less_lstm_biases(full_genesis):
    assert count(full_genesis.trainable_variables) == 12_619_012


def test_genesis_parameter_count_per_part(full_genesis):
    m = full_genesis
    # The reference's count: mask VAE + inference LSTM 11,797,729 in PyTorch, less one 4·128 bias.
    mask_vae = m.mask_encoder, m.mask_posterior, m.mask_decoder
    assert sum(count(p.trainable_variables) for p in mask_vae) == 11_797_729 - 4 * 128
    assert count(m.component_vae.trainable_variables) == 369_539
    assert count(m.mask_prior.lstm.trainable_variables) == 329_728 - 4 * 256
    assert count(m.mask_prior.head.trainable_variables) == 32_896
    assert count(m.component_prior.trainable_variables) == 90_656


def test_genesis_s_parameter_count():
    m = GenesisS(image_size=64, num_slots=7).build_for_images()
    assert count(m.trainable_variables) == 12_205_700
    assert count(m.component_decoder.trainable_variables) == 46_883


def test_parameter_count_does_not_depend_on_slots(full_genesis):
    other = Genesis(image_size=64, num_slots=3).build_for_images()
    assert count(other.trainable_variables) == count(full_genesis.trainable_variables)


@pytest.fixture(scope="module")
def small():
    tf.random.set_seed(0)
    model = Genesis(image_size=32, num_slots=3)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 2])
    return model, images


def assert_partition(log_masks, num_slots, batch, size):
    assert log_masks.shape == (batch, num_slots, size, size, 1)
    lse = tf.reduce_logsumexp(log_masks, axis=1).numpy()
    assert np.max(np.abs(lse)) < 1e-5
    assert np.all(log_masks.numpy() <= 1e-6)


def test_forward_shapes_and_mask_partition(small):
    model, images = small
    out = model(images, training=True)
    assert out.recon.shape == (2, 32, 32, 3)
    assert out.components.shape == (2, 3, 32, 32, 3)
    assert out.z_mask.shape == (2, 3, 64)
    assert out.z_comp.shape == (2, 3, 16)
    assert_partition(out.log_masks, 3, 2, 32)
    # The reconstruction is the mask-weighted sum of the components.
    expected = np.sum(np.exp(out.log_masks.numpy()) * out.components.numpy(), axis=1)
    np.testing.assert_allclose(out.recon.numpy(), expected, atol=1e-5)


def test_more_slots_at_inference_than_in_training(small):
    model, images = small
    out = model(images, training=False, num_slots=5)
    assert_partition(out.log_masks, 5, 2, 32)
    assert out.z_comp.shape == (2, 5, 16)


def test_samples_are_partitions_and_reproducible_with_a_seed(small):
    model, _ = small
    a = model.sample(batch_size=4, seed=3)
    b = model.sample(batch_size=4, seed=3)
    c = model.sample(batch_size=4, seed=4)
    assert a.recon.shape == (4, 32, 32, 3)
    assert_partition(a.log_masks, 3, 4, 32)
    np.testing.assert_array_equal(a.recon.numpy(), b.recon.numpy())
    assert not np.allclose(a.recon.numpy(), c.recon.numpy())
    assert_partition(model.sample(batch_size=2, num_slots=6).log_masks, 6, 2, 32)


def test_loss_terms_shapes_and_signs(small):
    model, images = small
    out = model(images, training=True)
    terms = model.loss_terms(images, out)
    assert set(terms) == {"err", "kl/m", "kl/l"}
    for value in terms.values():
        assert value.shape == (2,)
        assert np.all(np.isfinite(value.numpy()))


def test_features_are_deterministic_posterior_means(small):
    model, images = small
    f1, f2 = model.features(images), model.features(images)
    assert f1.shape == (2, 3 * (64 + 16))
    np.testing.assert_array_equal(f1.numpy(), f2.numpy())


def test_genesis_s_api():
    model = GenesisS(image_size=32, num_slots=3)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[3, 4])
    out = model(images, training=True)
    assert out.z_comp is None and out.z_mask.shape == (2, 3, 64)
    assert_partition(out.log_masks, 3, 2, 32)
    terms = model.loss_terms(images, out)
    assert set(terms) == {"err", "kl/m"}  # no component latents, so no kl/l
    assert np.all(np.isfinite(terms["kl/m"].numpy()))
    assert_partition(model.sample(batch_size=3, seed=1).log_masks, 3, 3, 32)
    assert model.features(images).shape == (2, 3 * 64)


@pytest.mark.parametrize("mode", ["function", "xla"])
def test_graph_and_xla_match_eager_and_batch_size_is_not_baked_in(small, mode):
    model, images = small

    def forward(x):
        out = model(x, training=False, deterministic=True)
        terms = model.loss_terms(x, out)
        return out.recon, terms["err"], terms["kl/m"], terms["kl/l"]

    compiled = tf.function(
        forward,
        jit_compile=(mode == "xla"),
        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)],
    )
    eager = forward(images)
    graph = compiled(images)
    for e, g in zip(eager, graph, strict=True):
        np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-4, atol=1e-3)
    # A different batch size runs through the same trace.
    assert compiled(tf.concat([images, images, images], 0))[0].shape[0] == 6
    assert compiled.experimental_get_tracing_count() == 1


def test_sampling_in_compiled_functions_matches_eager(small):
    model, _ = small
    eager = model.sample(batch_size=2, seed=5).recon.numpy()
    graph = tf.function(lambda n: model.sample(batch_size=n, seed=5).recon)
    np.testing.assert_allclose(graph(tf.constant(2)).numpy(), eager, atol=1e-4)
    # XLA draws the same numbers when the batch size is static (a Python int).
    xla = tf.function(lambda: model.sample(batch_size=2, seed=5).recon, jit_compile=True)
    np.testing.assert_allclose(xla().numpy(), eager, atol=1e-4)


def test_bad_image_shape_is_a_clear_error(small):
    model, _ = small
    with pytest.raises(ValueError, match=r"expected images \[B, 32, 32, 3\] \(float32"):
        model(tf.zeros([1, 64, 64, 3]))
    with pytest.raises(ValueError, match="image_size 48 is not supported"):
        Genesis(image_size=48)
    with pytest.raises(ValueError, match="num_slots must be"):
        Genesis(image_size=32, num_slots=1)


def test_mixed_bfloat16_policy_keeps_probabilities_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = Genesis(image_size=32, num_slots=3)
        images = _scenes()
        out = model(images, training=True)
        terms = model.loss_terms(images, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.mask_decoder.compute_dtype == "bfloat16"
    assert out.log_masks.dtype == tf.float32 and terms["err"].dtype == tf.float32
    assert_partition(out.log_masks, 3, 2, 32)
    assert all(np.all(np.isfinite(t.numpy())) for t in terms.values())


def _train(model, images, geco, steps):
    model.build_for_images()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)

    step = tf.function(make_train_step(model, optimizer, geco, images.shape[0],
                                       seed_fn=lambda: 11))
    return [float(step(images)["err"]) for _ in range(steps)]


def _scenes(size=32):
    """Two images: a coloured square on a coloured background (learnable in a few steps)."""
    images = np.zeros([2, size, size, 3], np.float32)
    images[0] = [0.2, 0.4, 0.9]
    images[0, 4:16, 6:18] = [0.9, 0.3, 0.1]
    images[1] = [0.7, 0.7, 0.2]
    images[1, 14:28, 10:24] = [0.1, 0.8, 0.5]
    return tf.constant(images)


def _excess(errs, size=32, pixel_std=0.7):
    """err minus its floor HWC·½log(2πσ²), reached only by a perfect reconstruction."""
    floor = size * size * 3 * 0.5 * np.log(2 * np.pi * pixel_std**2)
    return np.asarray(errs) - floor


def test_a_few_dozen_geco_steps_lower_the_error():
    tf.random.set_seed(1)
    model = Genesis(image_size=32, num_slots=3)
    geco = GECO.for_image(32, 32)
    errs = _excess(_train(model, _scenes(), geco, steps=30))
    assert all(np.isfinite(errs))
    assert np.mean(errs[-5:]) < 0.5 * np.mean(errs[:5]), errs
    assert float(geco.err_ema) > 0


def test_genesis_s_learns_too():
    tf.random.set_seed(2)
    model = GenesisS(image_size=32, num_slots=3)
    errs = _excess(_train(model, _scenes(), GECO.for_image(32, 32), steps=30))
    assert np.mean(errs[-5:]) < 0.5 * np.mean(errs[:5]), errs
