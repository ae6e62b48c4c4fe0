"""GENESIS-V2's layers: the IC-SBP against a NumPy statement of the spec and its gradients,
the gated embedding, masked-mean pooling, and the norms, the decoder and the encoder
against torch.nn on equal weights (../shared/GENESIS_V2.md §1)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.layers.ic_sbp import InstanceColouringSBP, straight_through_clamp
from genesis_tf.layers.semiconv import SemiConvEmbedding
from genesis_tf.layers.slot_decoder import SlotBroadcastDecoder
from genesis_tf.layers.slot_posterior import MaskedMeanPosterior, masked_mean
from genesis_tf.layers.torch_norms import GroupNorm, LayerNorm
from genesis_tf.layers.unet import UNetBlock, UNetEncoder

NO_TORCH = ("torch not installed; pip install -e '.[torch]' compares the layers with "
            "torch.nn on equal weights")


def randomise(layer, seed):
    """Every weight of ``layer`` to N(0, 0.3²) (γ around 1), so that no default hides."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        value = rng.normal(0.0, 0.3, v.shape)
        v.assign((value + 1.0 if v.path.endswith("gamma") else value).astype(np.float32))


def nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


# -- IC-SBP -------------------------------------------------------------------------------

# σ_0 measured on the reference (gaussian kernel), by K.
MEASURED_SIGMA_0 = {4: 0.360674, 5: 0.288539, 7: 0.206099, 9: 0.160299, 10: 0.144270,
                    11: 0.131154}


def built_ic_sbp(num_slots, kernel="gaussian", layer_class=InstanceColouringSBP):
    layer = layer_class(num_slots, kernel)
    layer.build()
    return layer


@pytest.mark.parametrize("num_slots", sorted(MEASURED_SIGMA_0))
def test_log_sigma_starts_at_the_measured_sigma_0(num_slots):
    layer = built_ic_sbp(num_slots)
    assert layer.log_sigma.trainable
    np.testing.assert_allclose(float(layer.log_sigma), math.log(MEASURED_SIGMA_0[num_slots]),
                               atol=1e-5)


def test_other_kernels_start_at_their_sigma_0_and_unknown_kernels_are_refused():
    np.testing.assert_allclose(np.exp(float(built_ic_sbp(9, "laplacian").log_sigma)),
                               1 / (3 * math.log(2)), rtol=1e-6)
    np.testing.assert_allclose(np.exp(float(built_ic_sbp(5, "epanechnikov").log_sigma)),
                               0.4, rtol=1e-6)
    with pytest.raises(ValueError, match="kernel must be one of"):
        InstanceColouringSBP(5, "cosine")


def numpy_ic_sbp(embedding, uniform, num_slots, kernel, sigma):
    """The spec's steps 1-5 (§1.3) in float64: (log masks [B, K, H, W], seeds [B, K−1])."""
    batch, height, width, depth = embedding.shape
    c = embedding.reshape(batch, -1, depth).astype(np.float64)
    u = uniform.reshape(batch, -1).astype(np.float64)
    log_scope = np.zeros_like(u)
    log_masks, seeds = [], []
    for _ in range(num_slots - 1):
        seed = np.argmax(u * np.exp(log_scope), axis=1)
        seed_embedding = c[np.arange(batch), seed][:, None]  # [B, 1, D]
        squared = np.sum((c - seed_embedding) ** 2, axis=-1)
        if kernel == "gaussian":
            alpha = np.exp(-squared / sigma)
        elif kernel == "laplacian":
            alpha = np.exp(-np.sqrt(np.maximum(squared, 1e-10)) / sigma)
        else:
            alpha = np.maximum(1.0 - squared / sigma, 0.0)
        alpha = np.clip(alpha, 0.01, 0.99)
        log_masks.append(log_scope + np.log(alpha))
        log_scope = log_scope + np.log(1.0 - alpha)
        seeds.append(seed)
    log_masks.append(log_scope)
    return (np.stack(log_masks, 1).reshape(batch, num_slots, height, width),
            np.stack(seeds, 1))


def embedding_and_draw(batch=2, size=8, depth=8, scale=0.12, seed=0):
    """A smooth embedding plus noise (α spans (0, 1) at σ_0) and a uniform draw."""
    rng = np.random.default_rng(seed)
    line = np.linspace(-1.0, 1.0, size)
    smooth = np.sin(3.0 * line[:, None, None] + np.arange(depth)) * \
        np.cos(2.0 * line[None, :, None] - np.arange(depth))
    embedding = scale * (smooth[None] + rng.normal(0.0, 1.0, (batch, size, size, depth)))
    uniform = rng.uniform(0.0, 1.0, (batch, size, size))
    return embedding.astype(np.float32), uniform.astype(np.float32)


# σ_0 at K = 5 by the spec's formulas (§1.3, step 1).
SIGMA_0_AT_5 = {"gaussian": 1 / (5 * math.log(2)), "laplacian": 1 / (math.sqrt(5) * math.log(2)),
                "epanechnikov": 2 / 5}


@pytest.mark.parametrize("kernel", sorted(SIGMA_0_AT_5))
def test_ic_sbp_equals_numpy_on_a_fixed_draw(kernel):
    embedding, uniform = embedding_and_draw()
    layer = built_ic_sbp(5, kernel)
    log_masks, seeds = layer(tf.constant(embedding), tf.constant(uniform))
    expected, expected_seeds = numpy_ic_sbp(embedding, uniform, 5, kernel,
                                            SIGMA_0_AT_5[kernel])
    assert log_masks.shape == (2, 5, 8, 8, 1) and log_masks.dtype == tf.float32
    np.testing.assert_array_equal(seeds.numpy(), expected_seeds)
    # float32 against float64: relu(1 − d/σ) near 0 loses a few digits (epanechnikov).
    np.testing.assert_allclose(log_masks.numpy()[..., 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(log_masks.numpy()).sum(1), 1.0, atol=1e-5)
    # The draw is not degenerate: masks take shares in between the clamp's bounds.
    alpha_1 = np.exp(expected[:, 0])
    assert np.mean((alpha_1 > 0.02) & (alpha_1 < 0.98)) > 0.2
    # More and fewer steps than the layer was built for: still a partition.
    for steps in (2, 7):
        more, _ = layer(tf.constant(embedding), tf.constant(uniform), num_slots=steps)
        assert more.shape[1] == steps
        np.testing.assert_allclose(np.exp(more.numpy()).sum(1), 1.0, atol=1e-5)


def test_seeds_depend_on_the_draw_only_through_its_order():
    embedding, uniform = embedding_and_draw(seed=1)
    layer = built_ic_sbp(4)
    log_masks, seeds = layer(tf.constant(embedding), tf.constant(uniform))
    halved, halved_seeds = layer(tf.constant(embedding), tf.constant(0.5 * uniform))
    np.testing.assert_array_equal(seeds.numpy(), halved_seeds.numpy())
    np.testing.assert_array_equal(log_masks.numpy(), halved.numpy())
    _, other_seeds = layer(tf.constant(embedding), tf.constant(uniform[::-1]))
    assert not np.array_equal(seeds.numpy(), other_seeds.numpy())


def test_straight_through_clamp_passes_gradient_one_everywhere():
    x = tf.constant([-1.0, 0.0, 0.005, 0.5, 0.995, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = straight_through_clamp(x, 0.01, 0.99)
    np.testing.assert_allclose(y.numpy(), [0.01, 0.01, 0.01, 0.5, 0.99, 0.99], atol=1e-7)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), np.ones(6))


class DetachedSeedSBP(InstanceColouringSBP):
    """The IC-SBP with the gathered seed embedding held constant (what the reference does
    NOT do): the comparison that shows the gather carries gradient."""

    def _similarity(self, flat, seed_embedding, sigma):
        return super()._similarity(flat, tf.stop_gradient(seed_embedding), sigma)


def ic_sbp_gradients(layer, embedding, uniform, weights):
    """∂L/∂(embedding, uniform, log σ) of L = Σ weights·log masks; and the seeds."""
    c, u = tf.constant(embedding), tf.constant(uniform)
    with tf.GradientTape() as tape:
        tape.watch([c, u])
        log_masks, seeds = layer(c, u)
        loss = tf.reduce_sum(weights * log_masks)
    grad_c, grad_u, grad_sigma = tape.gradient(loss, [c, u, layer.log_sigma])
    return grad_c, grad_u, grad_sigma, seeds.numpy(), log_masks.numpy()


@pytest.fixture(scope="module")
def sbp_case():
    """K=3 on a 6×6 embedding spread wide enough that some α are clamped."""
    embedding, uniform = embedding_and_draw(batch=2, size=6, scale=0.3, seed=2)
    weights = tf.random.stateless_normal([2, 3, 6, 6, 1], seed=[2, 3])
    return embedding, uniform, weights


def test_ic_sbp_gradients_reach_the_seed_embedding_but_not_the_draw(sbp_case):
    embedding, uniform, weights = sbp_case
    grad_c, grad_u, grad_sigma, seeds, _ = ic_sbp_gradients(
        built_ic_sbp(3), embedding, uniform, weights)
    assert grad_u is None  # the seed choice is not differentiable
    assert np.isfinite(float(grad_sigma)) and abs(float(grad_sigma)) > 1e-3
    grad_c = grad_c.numpy()
    # Every α depends on c only through c − e_k: shifting the whole embedding changes
    # nothing, so the gradient sums to 0 over pixels, which holds only if the gradient
    # also flows through the gathered e_k.
    scale = np.abs(grad_c).sum(axis=(1, 2))
    assert np.all(np.abs(grad_c.sum(axis=(1, 2))) < 1e-4 * scale)

    detached_c, *_ = ic_sbp_gradients(built_ic_sbp(3, layer_class=DetachedSeedSBP),
                                      embedding, uniform, weights)
    difference = np.abs(grad_c - detached_c.numpy()).max(-1).reshape(2, -1)  # [B, H·W]
    seed_pixels = np.zeros_like(difference, bool)
    seed_pixels[np.arange(2)[:, None], seeds] = True
    assert np.all(difference[seed_pixels] > 1e-3)  # the gather's share
    assert np.all(difference[~seed_pixels] < 1e-6)  # nowhere else


def test_every_alpha_has_gradient_through_the_clamp(sbp_case):
    embedding, uniform, weights = sbp_case
    layer = built_ic_sbp(3)
    log_masks, _ = layer(tf.constant(embedding), tf.constant(uniform))
    alpha_1 = np.exp(log_masks.numpy()[:, 0, ..., 0])  # [B, H, W]
    # Far pixels, clamped up to 0.01 (the seed, clamped down to 0.99, has the gather too).
    assert np.all(np.sum(alpha_1 <= 0.01 + 1e-7, axis=(1, 2)) >= 3)
    for step in range(2):  # the masks of the K − 1 kernel steps
        only_step = tf.one_hot(step, 3)[None, :, None, None, None] * weights
        grad_c, *_ = ic_sbp_gradients(layer, embedding, uniform, only_step)
        # Clamped pixels still pass gradient (a clip alone would give exactly 0 there).
        assert np.all(np.abs(grad_c.numpy()).max(-1) > 0), step


# -- the gated semi-convolutional embedding -----------------------------------------------


def test_colour_gate_starts_at_zero_so_the_embedding_is_the_coordinates():
    features = tf.random.stateless_normal([2, 5, 5, 16], seed=[3, 1])
    head = SemiConvEmbedding(8)
    with tf.GradientTape() as tape:
        embedding, delta = head(features)
        loss = tf.reduce_sum(tf.random.stateless_normal([2, 5, 5, 8], seed=[3, 2]) *
                             embedding)
    grads = tape.gradient(loss, [head.gate, head.conv.kernel, head.conv.bias])
    assert float(head.gate) == 0.0
    line = np.linspace(-1.0, 1.0, 5)
    expected = np.zeros([5, 5, 8], np.float32)
    expected[..., 6] = line[:, None]  # varies along rows
    expected[..., 7] = line[None, :]  # varies along columns
    np.testing.assert_allclose(embedding.numpy(), np.broadcast_to(expected, (2, 5, 5, 8)),
                               atol=1e-7)
    np.testing.assert_array_equal(delta.numpy(), 0.0)
    assert abs(float(grads[0])) > 1e-3  # the gate learns first
    for grad in grads[1:]:  # the conv under it not yet
        np.testing.assert_array_equal(grad.numpy(), 0.0)
    # Once open, the gate scales the conv and δ is its last two channels.
    head.gate.assign(0.5)
    embedding, delta = head(features)
    conv = head.conv(features).numpy()
    np.testing.assert_allclose(embedding.numpy() - expected, 0.5 * conv, atol=1e-6)
    np.testing.assert_allclose(delta.numpy(), 0.5 * conv[..., 6:], atol=1e-6)


def test_plain_embedding_without_semiconv():
    features = tf.random.stateless_normal([1, 4, 4, 16], seed=[4, 1])
    head = SemiConvEmbedding(8, semiconv=False)
    embedding, _ = head(features)
    assert head.gate is None and len(head.trainable_variables) == 2
    np.testing.assert_allclose(embedding.numpy(), head.conv(features).numpy(), atol=1e-7)


# -- masked-mean pooling and the posterior ------------------------------------------------


def test_masked_mean_by_hand():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    logits = rng.normal(size=(2, 3, 4, 5, 1)) * 3.0
    log_masks = (logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)).astype(
        np.float32)
    log_masks[0, 2] = -60.0  # an (almost) empty slot: the 1e-5 keeps it finite
    masks = np.exp(log_masks.astype(np.float64))[..., 0]  # [B, K, H, W]
    expected = np.einsum("bkhw,bhwc->bkc", masks, features) / (
        masks.sum(axis=(2, 3))[..., None] + 1e-5)
    pooled = masked_mean(tf.constant(features), tf.constant(log_masks))
    assert pooled.shape == (2, 3, 6) and pooled.dtype == tf.float32
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_posterior_scale_is_softplus_plus_half_plus_1e8():
    rng = np.random.default_rng(6)
    features = tf.constant(rng.normal(size=(2, 4, 4, 8)).astype(np.float32))
    log_masks = tf.nn.log_softmax(tf.constant(rng.normal(size=(2, 3, 4, 4, 1)), tf.float32),
                                  axis=1)
    posterior = MaskedMeanPosterior(latent_size=4)
    mean, scale = posterior(features, log_masks)
    randomise(posterior, 6)
    mean, scale = posterior(features, log_masks)
    pooled = masked_mean(features, log_masks)
    raw = posterior.head(posterior.hidden(posterior.norm(pooled))).numpy().astype(np.float64)
    assert mean.shape == scale.shape == (2, 3, 4)
    np.testing.assert_allclose(mean.numpy(), raw[..., :4], atol=1e-6)
    np.testing.assert_allclose(scale.numpy(), np.logaddexp(0.0, raw[..., 4:] + 0.5) + 1e-8,
                               rtol=1e-6)
    assert posterior.norm.epsilon == 1e-5


# -- norms, decoder and encoder against hand-written maths and torch.nn -------------------


def test_group_norm_by_hand():
    x = tf.random.stateless_normal([2, 3, 4, 16], seed=[7, 1]) * 2.0 + 0.5
    norm = GroupNorm(8)
    norm(x)
    randomise(norm, 7)
    xs = x.numpy().astype(np.float64).reshape(2, 3, 4, 8, 2)  # contiguous groups of 2
    mean = xs.mean(axis=(1, 2, 4), keepdims=True)
    var = xs.var(axis=(1, 2, 4), keepdims=True)  # biased, as torch
    expected = ((xs - mean) / np.sqrt(var + 1e-5)).reshape(2, 3, 4, 16)
    expected = expected * norm.gamma.numpy() + norm.beta.numpy()
    np.testing.assert_allclose(norm(x).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="do not split into 8 groups"):
        GroupNorm(8)(tf.zeros([1, 2, 2, 12]))


def test_group_norm_folds_a_channel_bias_as_if_added_before():
    """The decoder hands its transposed convs' bias to the norm (no pass of its own); a bias
    that differs within a group changes the group's mean and variance, and must count."""
    x = tf.random.stateless_normal([2, 3, 4, 16], seed=[7, 2])
    bias = tf.random.stateless_normal([16], seed=[7, 3]) * 3.0
    norm = GroupNorm(8)
    norm(x)
    randomise(norm, 8)
    np.testing.assert_allclose(norm(x, channel_bias=bias).numpy(), norm(x + bias).numpy(),
                               atol=2e-5)
    assert np.abs(norm(x, channel_bias=bias).numpy() - norm(x).numpy()).max() > 0.1


def test_group_norm_and_layer_norm_match_torch():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    x = tf.random.stateless_normal([2, 5, 6, 32], seed=[8, 1]) * 3.0 - 1.0
    group = GroupNorm(8)
    group(x)
    randomise(group, 8)
    reference = torch.nn.GroupNorm(8, 32, eps=1e-5)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(group.gamma.numpy()))
        reference.bias.copy_(torch.from_numpy(group.beta.numpy()))
        expected = nhwc(reference(torch.from_numpy(nchw(x.numpy()))).numpy())
    np.testing.assert_allclose(group(x).numpy(), expected, atol=1e-5)

    v = tf.random.stateless_normal([2, 3, 128], seed=[8, 2]) * 2.0 + 0.3
    layer = LayerNorm()
    layer(v)
    randomise(layer, 9)
    reference = torch.nn.LayerNorm(128, eps=1e-5)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.gamma.numpy()))
        reference.bias.copy_(torch.from_numpy(layer.beta.numpy()))
        expected = reference(torch.from_numpy(v.numpy())).numpy()
    np.testing.assert_allclose(layer(v).numpy(), expected, atol=1e-5)


def torch_conv_weight(kernel):
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))  # -> (out, in, kh, kw)


def torch_transposed_conv_weight(kernel):
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))  # -> (in, out, kh, kw)


def copy_into(torch, module, weight, bias=None):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if bias is not None:
            module.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    return module


def torch_group_norm(torch, norm):
    channels = norm.gamma.shape[0]
    return copy_into(torch, torch.nn.GroupNorm(8, channels, eps=1e-5), norm.gamma.numpy(),
                     norm.beta.numpy())


def torch_decoder(torch, decoder, latent_size):
    """The reference's decoder module written with torch.nn, with ``decoder``'s weights."""
    nn = torch.nn
    layers, channels = [], latent_size + 2
    for conv, norm in zip(decoder.convs, decoder.norms, strict=True):
        transposed = nn.ConvTranspose2d(channels, decoder.filters, 5, stride=2, padding=2,
                                        output_padding=1)
        copy_into(torch, transposed, torch_transposed_conv_weight(conv.kernel.numpy()),
                  conv.bias.numpy())
        layers += [transposed, torch_group_norm(torch, norm), nn.ReLU()]
        channels = decoder.filters
    out = copy_into(torch, nn.Conv2d(channels, 4, 1), torch_conv_weight(
        decoder.out.kernel.numpy()), decoder.out.bias.numpy())
    return nn.Sequential(*layers, out)


def test_slot_decoder_matches_torch_transposed_convs():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    latent_size = 12
    decoder = SlotBroadcastDecoder(image_size=32, filters=16)
    z = tf.random.stateless_normal([3, latent_size], seed=[9, 1])
    decoder(z)
    randomise(decoder, 10)
    result = decoder(z).numpy()
    side = 2  # 32 / 16
    line = torch.linspace(-1.0, 1.0, side)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    with torch.no_grad():
        tiled = torch.from_numpy(z.numpy())[:, :, None, None].expand(-1, -1, side, side)
        grid = torch.stack([rows, cols])[None].expand(3, -1, -1, -1)
        expected = torch_decoder(torch, decoder, latent_size)(torch.cat([tiled, grid], 1))
    assert result.shape == (3, 32, 32, 4)
    np.testing.assert_allclose(result, nhwc(expected.numpy()), atol=1e-5)


def torch_block(torch, block):
    """Conv2d(3×3, no bias) -> GroupNorm(8) -> ReLU with ``block``'s weights."""
    conv = block.conv
    reference = torch.nn.Conv2d(conv.kernel.shape[2], conv.filters, 3, padding=1, bias=False)
    copy_into(torch, reference, torch_conv_weight(conv.kernel.numpy()))
    return torch.nn.Sequential(reference, torch_group_norm(torch, block.norm),
                               torch.nn.ReLU())


def test_group_norm_unet_block_matches_torch():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    block = UNetBlock(16, norm="group")
    x = tf.random.stateless_normal([2, 6, 6, 8], seed=[10, 1])
    block(x)
    randomise(block, 11)
    result, _ = block(x)
    with torch.no_grad():
        expected = torch_block(torch, block)(torch.from_numpy(nchw(x.numpy())))
    np.testing.assert_allclose(result.numpy(), nhwc(expected.numpy()), atol=1e-5)


def torch_encoder(torch, encoder, x):
    """GENESIS-V2's U-Net encoder at 32×32 in torch.nn with ``encoder``'s weights."""
    F = torch.nn.functional
    c, side = encoder.bottleneck_channels, 4
    linears = []
    for i, dense in enumerate(encoder.mlp):
        kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
        # Keras flattens (h, w, c), PyTorch (c, h, w): permute the bottleneck side.
        if i == 0:
            kernel = kernel.reshape(side, side, c, -1).transpose(2, 0, 1, 3).reshape(
                side * side * c, -1)
        if i == len(encoder.mlp) - 1:
            kernel = kernel.reshape(-1, side, side, c).transpose(0, 3, 1, 2).reshape(
                -1, side * side * c)
            bias = bias.reshape(side, side, c).transpose(2, 0, 1).reshape(-1)
        linears.append(copy_into(torch, torch.nn.Linear(*kernel.shape), kernel.T, bias))
    skips = []
    for i, block in enumerate(encoder.down):
        x = torch_block(torch, block)(x)
        skips.append(x)
        if i < len(encoder.down) - 1:
            x = F.interpolate(x, scale_factor=0.5, mode="nearest")
    h = x.reshape(x.shape[0], -1)
    for linear in linears:
        h = F.relu(linear(h))
    x = h.reshape(x.shape[0], c, side, side)
    for i, block in enumerate(encoder.up):
        x = torch_block(torch, block)(torch.cat([x, skips[-1 - i]], dim=1))
        if i < len(encoder.up) - 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.relu(x)


def test_unet_encoder_matches_torch_at_32():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    encoder = UNetEncoder(32)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[11, 1])
    encoder(images)
    # N(0, 0.3²) weights saturate nothing here: group norm rescales every block.
    randomise(encoder, 12)
    result = encoder(images).numpy()
    with torch.no_grad():
        expected = torch_encoder(torch, encoder, torch.from_numpy(nchw(images.numpy())))
    assert result.shape == (2, 32, 32, 64)
    assert np.mean(result > 0) > 0.2  # not a dead ReLU map
    np.testing.assert_allclose(result, nhwc(expected.numpy()), atol=1e-4)
