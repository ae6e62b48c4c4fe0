"""The model contract (genesis_tf/models/base.py) and training-mode faithfulness."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import runs
from genesis_tf.models import MODELS, Genesis, GenesisS, config_of, elbo


def _fresh_statistics(model):
    for v in model.variables:
        if v.path.endswith("moving_mean"):
            v.assign(tf.zeros_like(v))
        elif v.path.endswith("moving_variance"):
            v.assign(tf.ones_like(v))


def test_training_batch_norm_statistics_include_the_kth_latent():
    model = Genesis(image_size=32, num_slots=3).build_for_images()
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 1])
    _fresh_statistics(model)
    out = model(images, training=True, deterministic=True)
    # By hand: the first batch-normalised layer of the mask decoder sees the stem's output
    # for every latent; its h half's batch moments over those B·K maps, one update of
    # PyTorch's running averages (0.9·old + 0.1·batch, unbiased variance).
    decoder, block = model.mask_decoder, model.mask_decoder.blocks[0]

    def expected_statistics(latents):
        x = decoder.stem(tf.reshape(latents, [-1, 1, 1, 64]))
        h = block._convolve(x)[..., : block.filters].numpy().reshape(-1, block.filters)
        return 0.1 * h.mean(0), 0.9 + 0.1 * h.var(0, ddof=1)

    all_k = expected_statistics(out.z_mask)
    first_k_minus_1 = expected_statistics(out.z_mask[:, :2])
    np.testing.assert_allclose(block.h_norm.moving_mean.numpy(), all_k[0], rtol=1e-4,
                               atol=1e-9)
    np.testing.assert_allclose(block.h_norm.moving_variance.numpy(), all_k[1], rtol=1e-6)
    # ... which is measurably not what decoding only K−1 latents gives.
    relative = np.abs(all_k[0] - first_k_minus_1[0]) / np.abs(all_k[0])
    assert np.max(relative) > 1e-3, relative


def test_inference_skips_the_kth_latent_without_changing_outputs():
    model = Genesis(image_size=32, num_slots=3).build_for_images()
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[2, 2])
    out = model(images, training=False, deterministic=True)
    flat = tf.reshape(out.z_mask, [-1, 64])  # all K latents, moving statistics
    logits = tf.reshape(model.mask_decoder(flat, training=False), [2, 3, 32, 32, 1])
    np.testing.assert_allclose(out.mask_logits.numpy(), logits[:, :2].numpy(), atol=1e-6)
    log_masks, _ = model.stick_breaking(logits[:, :2])
    np.testing.assert_allclose(out.log_masks.numpy(), log_masks.numpy(), atol=1e-6)


@pytest.mark.parametrize("cls, kwargs", [
    (Genesis, dict(image_size=32, num_slots=4, mask_latent_size=32, comp_latent_size=8,
                   pixel_std=0.5)),
    (GenesisS, dict(image_size=32, num_slots=5, latent_size=32, pixel_std=0.6)),
])
def test_config_round_trip(cls, kwargs):
    model = cls(**kwargs)
    config = model.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    copy = cls.from_config(config)
    assert copy.get_config() == config
    model.build_for_images()
    copy.build_for_images()
    assert [tuple(v.shape) for v in model.weights] == [tuple(v.shape) for v in copy.weights]
    # The description a run stores rebuilds the same model by class name.
    description = config_of(model)
    assert MODELS[description["class_name"]] is cls


@pytest.mark.parametrize("cls", [Genesis, GenesisS])
def test_loss_terms_follow_the_contract(cls):
    model = cls(image_size=32, num_slots=3)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[3, 3])
    terms = model.loss_terms(images, model(images, training=True))
    assert "err" in terms and all(k == "err" or k.startswith("kl/") for k in terms)
    for value in terms.values():
        assert value.shape == (2,)
    total = terms["err"] + sum(v for k, v in terms.items() if k.startswith("kl/"))
    np.testing.assert_allclose(elbo(terms).numpy(), total.numpy(), rtol=1e-6)


def test_uint8_images_are_converted_not_taken_as_values_in_0_255():
    model = Genesis(image_size=32, num_slots=3)
    floats = tf.random.stateless_uniform([2, 32, 32, 3], seed=[4, 4])
    uint8 = tf.cast(tf.round(floats * 255.0), tf.uint8)
    as_float = tf.cast(uint8, tf.float32) / 255.0
    a = model(uint8, training=False, deterministic=True)
    b = model(as_float, training=False, deterministic=True)
    np.testing.assert_allclose(a.recon.numpy(), b.recon.numpy(), atol=1e-6)
    err = model.loss_terms(uint8, a)["err"].numpy()
    np.testing.assert_allclose(err, model.loss_terms(as_float, b)["err"].numpy(), rtol=1e-6)
    assert np.all(err < 1e5)  # not the ~2e8 of pixel values in [0, 255]
    with pytest.raises(ValueError, match="expected float images"):
        model(tf.zeros([1, 32, 32, 3], tf.int32))


@pytest.mark.parametrize("cls", [Genesis, GenesisS])
def test_a_checkpoint_of_the_model_holds_every_variable(cls, tmp_path):
    model = cls(image_size=32, num_slots=3).build_for_images()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert sum("moving_mean" in n for n in names) == sum(
        v.path.endswith("moving_mean") for v in model.variables) == 20
    assert runs.saved_model_variables(path) == runs.weight_count(model)
    assert runs.weight_count(model) >= len(model.variables) - 2  # only RNG states out
