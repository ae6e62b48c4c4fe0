"""MONet's attention U-Net: sizes against the reference, and equality with torch.nn."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.layers.unet import (
    AttentionUNet,
    InstanceNorm,
    UNetBlock,
    down_filters,
    num_blocks,
    up_filters,
)

# The reference's U-Net at 64×64 (reference_state_dicts.md, "MONet, 64x64, K_steps=5"),
# PyTorch layouts: conv (out, in, kh, kw), linear (out, in).
REFERENCE_64 = {
    "down": [(32, 4), (32, 32), (64, 32), (64, 64), (64, 64)],
    "up": [(64, 128), (64, 128), (32, 128), (32, 64), (32, 64)],
    "mlp": [(128, 1024), (128, 128), (1024, 128)],
    "final_conv": (1, 32, 1, 1),
}

NO_TORCH = ("torch not installed; pip install -e '.[torch]' compares the layers with "
            "torch.nn on equal weights")


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def built_unet(size, batch=1):
    unet = AttentionUNet(size)
    unet(tf.zeros([batch, size, size, 3]), tf.zeros([batch, size, size, 1]))
    return unet


def randomise(layer, seed):
    """Every weight of ``layer`` to N(0, 0.3²) (γ around 1), so that no default hides."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        value = rng.normal(0.0, 0.3, v.shape)
        v.assign((value + 1.0 if v.path.endswith("gamma") else value).astype(np.float32))


def test_block_counts_and_filters_follow_the_image_size():
    assert [num_blocks(s) for s in (32, 64, 128)] == [4, 5, 6]
    assert down_filters(64) == [32, 32, 64, 64, 64]
    assert up_filters(64) == [64, 64, 32, 32, 32]
    assert down_filters(128) == [32, 32, 32, 64, 64, 64]
    assert up_filters(128) == [64, 64, 32, 32, 32, 32]
    assert down_filters(32) == [32, 64, 64, 64]
    assert up_filters(32) == [64, 64, 32, 32]
    for bad in (48, 16, 100):
        with pytest.raises(ValueError, match="power of two"):
            num_blocks(bad)


def test_weight_shapes_and_count_match_the_reference_at_64():
    unet = built_unet(64)
    assert count(unet.trainable_variables) == 604_513
    for path, blocks in (("down", unet.down), ("up", unet.up)):
        for block, (out_c, in_c) in zip(blocks, REFERENCE_64[path], strict=True):
            assert block.conv.use_bias is False
            assert tuple(block.conv.kernel.shape) == (3, 3, in_c, out_c)
            assert tuple(block.norm.gamma.shape) == tuple(block.norm.beta.shape) == (out_c,)
    for dense, (out_f, in_f) in zip(unet.mlp, REFERENCE_64["mlp"], strict=True):
        assert tuple(dense.kernel.shape) == (in_f, out_f)
        assert tuple(dense.bias.shape) == (out_f,)
    assert tuple(unet.final_conv.kernel.shape) == (1, 1, 32, 1)
    assert tuple(unet.final_conv.bias.shape) == (1,)


def test_instance_norm_by_hand():
    x = tf.random.stateless_normal([2, 5, 6, 3], seed=[4, 2]) * 3.0 + 1.0
    norm = InstanceNorm()
    norm.build(x.shape)
    norm.gamma.assign([0.5, 2.0, -1.0])
    norm.beta.assign([0.1, -0.2, 0.3])
    xs = x.numpy().astype(np.float64)
    mean = xs.mean(axis=(1, 2), keepdims=True)
    var = xs.var(axis=(1, 2), keepdims=True)  # biased, as torch.nn.InstanceNorm2d
    expected = (xs - mean) / np.sqrt(var + 1e-5) * [0.5, 2.0, -1.0] + [0.1, -0.2, 0.3]
    np.testing.assert_allclose(norm(x).numpy(), expected, atol=1e-5)


def test_log_alpha_and_log_one_minus_alpha_form_a_distribution():
    unet = built_unet(32, batch=2)
    randomise(unet, 0)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 1])
    log_scope = -tf.random.stateless_uniform([2, 32, 32, 1], seed=[1, 2]) * 3.0
    log_alpha, log_pass = unet(images, log_scope)
    assert log_alpha.shape == log_pass.shape == (2, 32, 32, 1)
    assert log_alpha.dtype == log_pass.dtype == tf.float32
    total = np.logaddexp(log_alpha.numpy(), log_pass.numpy())
    np.testing.assert_allclose(total, 0.0, atol=1e-6)
    logits = unet.logits(images, log_scope).numpy()
    np.testing.assert_allclose(log_alpha.numpy(), -np.logaddexp(0.0, -logits), atol=1e-5)
    # The scope is an input: changing it changes the attention.
    other, _ = unet(images, tf.zeros_like(log_scope))
    assert np.max(np.abs(other.numpy() - log_alpha.numpy())) > 1e-3


# -- against torch.nn (only when torch is installed; it is not a dependency) -------------


def torch_conv_weight(kernel):
    return np.transpose(kernel, (3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)


def torch_block(torch, block):
    """conv(bias=False) -> InstanceNorm2d(affine) -> ReLU with the block's weights."""
    nn = torch.nn
    filters, in_channels = block.conv.filters, block.conv.kernel.shape[2]
    conv = nn.Conv2d(in_channels, filters, 3, padding=1, bias=False)
    norm = nn.InstanceNorm2d(filters, eps=1e-5, affine=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(torch_conv_weight(block.conv.kernel.numpy())))
        norm.weight.copy_(torch.from_numpy(block.norm.gamma.numpy()))
        norm.bias.copy_(torch.from_numpy(block.norm.beta.numpy()))
    return nn.Sequential(conv, norm, nn.ReLU())


def torch_resize(torch, x, resize):
    interpolate = torch.nn.functional.interpolate
    if resize == "down":
        return interpolate(x, scale_factor=0.5, mode="nearest")
    if resize == "up":
        return interpolate(x, scale_factor=2.0, mode="nearest")
    return x


def nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


@pytest.mark.parametrize("resize", ["down", "up", None])
def test_block_matches_torch(resize):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    block = UNetBlock(8, resize=resize)
    x = tf.random.stateless_normal([2, 8, 8, 5], seed=[7, 1])
    block(x)
    randomise(block, 1)
    before, after = block(x)
    reference = torch_block(torch, block)
    with torch.no_grad():
        t_before = reference(torch.from_numpy(nchw(x.numpy())))
        t_after = torch_resize(torch, t_before, resize)
    np.testing.assert_allclose(before.numpy(), nhwc(t_before.numpy()), atol=1e-5)
    np.testing.assert_allclose(after.numpy(), nhwc(t_after.numpy()), atol=1e-5)
    expected_size = {"down": 4, "up": 16, None: 8}[resize]
    assert after.shape == (2, expected_size, expected_size, 8)


def torch_unet_logits(torch, unet, x_nchw):
    """The U-Net written with torch.nn, fed this U-Net's weights; returns the logits."""
    nn, F = torch.nn, torch.nn.functional
    c = unet.bottleneck_channels
    side = 4
    downs = [torch_block(torch, b) for b in unet.down]
    ups = [torch_block(torch, b) for b in unet.up]
    linears = []
    for i, dense in enumerate(unet.mlp):
        kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
        # Keras flattens (h, w, c), PyTorch (c, h, w): permute the bottleneck side.
        if i == 0:
            kernel = kernel.reshape(side, side, c, -1).transpose(2, 0, 1, 3).reshape(
                side * side * c, -1)
        if i == len(unet.mlp) - 1:
            kernel = kernel.reshape(-1, side, side, c).transpose(0, 3, 1, 2).reshape(
                -1, side * side * c)
            bias = bias.reshape(side, side, c).transpose(2, 0, 1).reshape(-1)
        linear = nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
        linears.append(linear)
    final = nn.Conv2d(unet.final_conv.kernel.shape[2], 1, 1)
    with torch.no_grad():
        final.weight.copy_(torch.from_numpy(torch_conv_weight(unet.final_conv.kernel.numpy())))
        final.bias.copy_(torch.from_numpy(unet.final_conv.bias.numpy()))
        x, skips = x_nchw, []
        for i, block in enumerate(downs):
            x = block(x)
            skips.append(x)
            if i < len(downs) - 1:
                x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        h = x.reshape(x.shape[0], -1)
        for linear in linears:
            h = F.relu(linear(h))
        x = h.reshape(x.shape[0], c, side, side)
        for i, block in enumerate(ups):
            x = block(torch.cat([x, skips[-1 - i]], dim=1))
            if i < len(ups) - 1:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return final(x)


@pytest.mark.parametrize("size", [32, 64])
def test_unet_matches_torch(size):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    unet = built_unet(size)
    randomise(unet, size)
    images = tf.random.stateless_uniform([2, size, size, 3], seed=[size, 3])
    log_scope = tf.math.log(tf.random.stateless_uniform([2, size, size, 1], seed=[size, 4],
                                                        minval=0.05, maxval=1.0))
    log_alpha, log_pass = unet(images, log_scope)
    # The reference's input is concat(x, log s) on the channel axis.
    x = np.concatenate([images.numpy(), log_scope.numpy()], axis=-1)
    logits = torch_unet_logits(torch, unet, torch.from_numpy(nchw(x)))
    with torch.no_grad():
        t_log_alpha = nhwc(torch.nn.functional.logsigmoid(logits).numpy())
        t_log_pass = nhwc(torch.nn.functional.logsigmoid(-logits).numpy())
    np.testing.assert_allclose(log_alpha.numpy(), t_log_alpha, atol=1e-5)
    np.testing.assert_allclose(log_pass.numpy(), t_log_pass, atol=1e-5)
