"""The likelihood and KL terms against direct NumPy/SciPy computations."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import norm

from genesis_tf import distributions as dists
from genesis_tf.models import Genesis


def random_log_masks(rng, shape):
    logits = rng.normal(size=shape)
    return logits - logsumexp(logits, axis=1, keepdims=True)


def test_mixture_log_likelihood_equals_numpy():
    rng = np.random.default_rng(0)
    b, k, h, w, c = 2, 4, 5, 6, 3
    log_masks = random_log_masks(rng, (b, k, h, w, 1)).astype(np.float32)
    comps = rng.uniform(size=(b, k, h, w, c)).astype(np.float32)
    x = rng.uniform(size=(b, h, w, c)).astype(np.float32)
    sigma = 0.7
    # log Σ_k m_k N(x | x_k, σ) per pixel and channel, summed over the image.
    per_slot = log_masks + norm.logpdf(x[:, None], loc=comps, scale=sigma)
    expected = -logsumexp(per_slot, axis=1).sum(axis=(1, 2, 3))
    got = dists.reconstruction_error(x, log_masks, comps, sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    likelihood = dists.mixture_likelihood(log_masks, comps, sigma)
    assert likelihood.batch_shape == (b,) and likelihood.event_shape == (h, w, c)


def test_per_slot_pixel_std():
    rng = np.random.default_rng(1)
    log_masks = random_log_masks(rng, (1, 2, 3, 3, 1)).astype(np.float32)
    comps = rng.uniform(size=(1, 2, 3, 3, 3)).astype(np.float32)
    x = rng.uniform(size=(1, 3, 3, 3)).astype(np.float32)
    sigmas = np.array([0.09, 0.11], np.float32)  # MONet's per-slot values
    per_slot = log_masks + norm.logpdf(x[:, None], loc=comps,
                                       scale=sigmas[None, :, None, None, None])
    expected = -logsumexp(per_slot, axis=1).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(
        dists.reconstruction_error(x, log_masks, comps, sigmas).numpy(), expected, rtol=1e-5)


def test_diagonal_gaussian_shapes():
    d = dists.diagonal_gaussian(tf.zeros([2, 3, 4]), tf.ones([2, 3, 4]))
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    assert d.sample(5).shape == (5, 2, 3, 4)


def gaussian_log_pdf(z, mean, scale):
    return norm.logpdf(z, loc=mean, scale=scale).sum(axis=-1)


@pytest.mark.parametrize("model_kl", ["kl/m", "kl/l"])
def test_model_kl_terms_equal_log_q_minus_log_p(model_kl):
    tf.random.set_seed(3)
    model = Genesis(image_size=32, num_slots=3)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[9, 9])
    out = model(images, training=False, seed=4)
    terms = model.loss_terms(images, out)
    o = {k: (None if v is None else np.asarray(v, np.float64)) for k, v in out._asdict().items()}
    if model_kl == "kl/m":
        log_q = gaussian_log_pdf(o["z_mask"], o["mask_mean"], o["mask_scale"])
        # Slot 1 has the standard normal prior; slots 2.. the LSTM prior.
        log_p = np.concatenate([
            norm.logpdf(o["z_mask"][:, :1]).sum(-1),
            gaussian_log_pdf(o["z_mask"][:, 1:], o["mask_prior_mean"][:, 1:],
                             o["mask_prior_scale"][:, 1:]),
        ], axis=1)
        np.testing.assert_array_equal(o["mask_prior_mean"][:, 0], 0.0)
        np.testing.assert_array_equal(o["mask_prior_scale"][:, 0], 1.0)
    else:
        log_q = gaussian_log_pdf(o["z_comp"], o["comp_mean"], o["comp_scale"])
        log_p = gaussian_log_pdf(o["z_comp"], o["comp_prior_mean"], o["comp_prior_scale"])
    expected = (log_q - log_p).sum(axis=1)
    np.testing.assert_allclose(terms[model_kl].numpy(), expected, rtol=1e-4, atol=1e-3)


def test_prior_scales_are_bounded():
    model = Genesis(image_size=32, num_slots=4)
    out = model(tf.random.uniform([2, 32, 32, 3]), training=False)
    for scale in (out.mask_prior_scale, out.comp_prior_scale):
        s = scale.numpy()
        assert np.all(s > 1e-4) and np.all(s < 1 + 1e-4)
    for mean in (out.mask_prior_mean, out.comp_prior_mean):
        assert np.all(np.abs(mean.numpy()) <= 1)
