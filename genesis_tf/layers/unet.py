r"""The U-Nets of MONet's attention network (Burgess et al. 2019, appendix B.2) and of
GENESIS-V2's pixel encoder.

At attention step k it reads concat(x, log s_{k-1}) (4 channels) and returns
log α_k and log(1 − α_k), the log shares of the current scope taken by slot k and passed
on, as log-sigmoids of one logit per pixel (= log-softmax over the pair (a, 0)).

Architecture for an S×S image, n = log2(S) − 1 blocks on each path (5 at 64×64, 6 at
128×128), c = ``filter_start``:

* a block: 3×3 bias-free conv (stride 1, padding 1) -> instance norm with learned affine
  (ε = 1e-5, no running statistics) -> ReLU -> ×2 nearest resize (none in the last block
  of each path);
* down path: filters c × (n − 3), then 2c × 3 (32, 32, 64, 64, 64 at 64×64), each
  output kept as a skip connection before it is downsampled; the last block sees 4×4;
* an MLP on the flattened 4×4×2c bottleneck: 128, 128, 4·4·2c, ReLU after each, reshaped
  back to 4×4×2c;
* up path: block i reads concat(previous, skip of down block n−1−i) and gives as many
  channels as the next skip has (c for the last block): 64, 64, 32, 32, 32 at 64×64;
* a 1×1 conv (with bias) to one logit.

Layout notes for ported weights: flattening is channels-last (h, w, c) here, (c, h, w)
in PyTorch, so the rows of the first MLP kernel and the columns of the last one are
permuted; up-path convs read (previous, skip) in that order, as the reference.
Downsampling by nearest resizing with factor ½ keeps the even rows and columns
(PyTorch's ``interpolate(scale_factor=0.5, mode="nearest")``); upsampling repeats each
row and column twice.

GENESIS-V2's encoder (``UNetEncoder``) is the same U-Net on the image alone (3 channels),
with c = 64, group norm (8 groups, ε 1e-5) in place of instance norm, and no final conv:
it returns the last up block's c-channel feature map (64, 64, 128, 128, 128 down and
128, 128, 64, 64, 64 up at 64×64).
"""
import math

from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.initializers import TorchConv2D, TorchDense
from genesis_tf.layers.torch_norms import AffineNorm, GroupNorm

BOTTLENECK = 4  # spatial size at the bottom of the U-Net, whatever the image size


def num_blocks(image_size):
    """Blocks per path for an S×S image: log2(S) − 1 (S a power of two, at least 32)."""
    if image_size < 32 or image_size & (image_size - 1):
        raise ValueError(
            f"the MONet U-Net needs a square image whose size is a power of two >= 32 "
            f"(log2(S) − 1 blocks down to {BOTTLENECK}×{BOTTLENECK}), got {image_size}")
    return int(math.log2(image_size)) - 1


def down_filters(image_size, filter_start=32):
    """Output channels of the down blocks: c × (n − 3), then 2c × 3."""
    n = num_blocks(image_size)
    return [filter_start] * (n - 3) + [2 * filter_start] * 3


def up_filters(image_size, filter_start=32):
    """Output channels of the up blocks: those of the skip each one's output meets next,
    then c."""
    down = down_filters(image_size, filter_start)
    return [down[-2 - i] for i in range(len(down) - 1)] + [filter_start]


class InstanceNorm(AffineNorm):
    """Instance normalisation over H×W per image and channel, with a learned per-channel
    scale γ (init 1) and offset β (init 0); biased variance, no running statistics
    (``torch.nn.InstanceNorm2d(affine=True)``). Moments are computed in float32."""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, variance = ops.moments(x32, axes=[1, 2], keepdims=True)  # [N, 1, 1, C]
        return self._affine((x32 - mean) * ops.rsqrt(variance + self.epsilon), x.dtype)


NORMS = {"instance": lambda: InstanceNorm(epsilon=1e-5, name="norm"),
         "group": lambda: GroupNorm(groups=8, epsilon=1e-5, name="norm")}


class UNetBlock(tracking.Layer):
    """3×3 bias-free conv -> norm (affine) -> ReLU -> optional ×2 nearest resize.

    ``resize``: "down" (keep every other row and column), "up" (repeat each twice) or None.
    ``norm``: "instance" (MONet) or "group" (8 groups: GENESIS-V2).
    Returns (activation before the resize [N, H, W, F], output after it): the down path
    keeps the former as its skip connection.
    """

    def __init__(self, filters, resize=None, norm="instance", **kwargs):
        super().__init__(**kwargs)
        if resize not in ("down", "up", None):
            raise ValueError(f"resize must be 'down', 'up' or None, got {resize!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.filters = filters
        self.resize = resize
        self.norm_type = norm
        self.conv = TorchConv2D(filters, 3, padding="same", use_bias=False, name="conv")
        self.norm = NORMS[norm]()

    def call(self, x):
        x = ops.relu(self.norm(self.conv(x)))
        if self.resize == "down":
            return x, x[:, ::2, ::2, :]  # [N, H/2, W/2, F]
        if self.resize == "up":
            return x, ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)  # [N, 2H, 2W, F]
        return x, x

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "resize": self.resize,
                "norm": self.norm_type}


class UNet(tracking.Layer):
    """The U-Net's blocks and bottleneck MLP; ``features`` maps [N, S, S, C_in] to the last
    up block's [N, S, S, c] (compute dtype)."""

    def __init__(self, image_size=64, filter_start=32, hidden=128, norm="instance",
                 **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.filter_start = filter_start
        self.hidden = hidden
        down = down_filters(image_size, filter_start)
        up = up_filters(image_size, filter_start)
        last = len(down) - 1
        self.down = [UNetBlock(f, resize=None if i == last else "down", norm=norm,
                               name=f"down_{i}") for i, f in enumerate(down)]
        self.up = [UNetBlock(f, resize=None if i == last else "up", norm=norm,
                             name=f"up_{i}") for i, f in enumerate(up)]
        self.bottleneck_channels = down[-1]
        bottleneck = BOTTLENECK * BOTTLENECK * self.bottleneck_channels
        self.mlp = [TorchDense(hidden, activation="relu", name="mlp_0"),
                    TorchDense(hidden, activation="relu", name="mlp_1"),
                    TorchDense(bottleneck, activation="relu", name="mlp_2")]

    def features(self, x):
        skips = []
        for block in self.down:
            skip, x = block(x)  # the skip is taken before downsampling
            skips.append(skip)
        n = ops.shape(x)[0]
        h = ops.reshape(x, (n, -1))  # [N, 4·4·2c], (h, w, c) order
        for dense in self.mlp:
            h = dense(h)
        x = ops.reshape(h, (n, BOTTLENECK, BOTTLENECK, self.bottleneck_channels))
        for i, block in enumerate(self.up):
            _, x = block(ops.concatenate([x, skips[-1 - i]], axis=-1))
        return x

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "filter_start": self.filter_start, "hidden": self.hidden}


class AttentionUNet(UNet):
    """MONet's attention network: (images [N, S, S, 3], log scope [N, S, S, 1]) ->
    (log α, log(1 − α)), each [N, S, S, 1] in float32."""

    def __init__(self, image_size=64, filter_start=32, hidden=128, **kwargs):
        super().__init__(image_size, filter_start, hidden, norm="instance", **kwargs)
        self.final_conv = TorchConv2D(1, 1, name="final_conv")

    def logits(self, images, log_scope):
        """The attention logit a per pixel, [N, S, S, 1] (compute dtype)."""
        x = ops.concatenate([images, ops.cast(log_scope, images.dtype)], axis=-1)  # [N,S,S,4]
        return self.final_conv(self.features(x))

    def call(self, images, log_scope):
        a = ops.cast(self.logits(images, log_scope), "float32")
        return ops.log_sigmoid(a), ops.log_sigmoid(-a)


class UNetEncoder(UNet):
    """GENESIS-V2's pixel encoder: images [N, S, S, 3] -> ReLU(features) [N, S, S, c].

    Group norm, c = 64; the reference replaces the U-Net's final conv by the identity and
    applies a ReLU to the output (a no-op after the last block's ReLU, kept as written).
    """

    def __init__(self, image_size=64, filter_start=64, hidden=128, **kwargs):
        super().__init__(image_size, filter_start, hidden, norm="group", **kwargs)

    def call(self, images):
        return ops.relu(self.features(images))
