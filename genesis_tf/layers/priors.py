"""The learned priors of GENESIS.

* Autoregressive mask prior p(z^m_k | z^m_<k), k >= 2: an LSTM reads z^m_1..z^m_{K-1};
  a dense layer gives mean = tanh(·) and scale = sigmoid(· + 4) + 1e-4 (in (1e-4, 1+1e-4),
  near 1 at initialisation). p(z^m_1) = N(0, I) has no parameters.
* Component prior p(z^c_k | z^m_k): an MLP 64 -> 256 ELU -> 256 ELU -> 2·D, same maps.
"""
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.initializers import TorchDense, TorchLSTM


def bounded_gaussian_params(raw):
    """[..., 2·D] -> (mean in (−1, 1), scale in (1e-4, 1 + 1e-4)), each [..., D]."""
    mean, pre_scale = ops.split(raw, 2, axis=-1)
    return ops.tanh(mean), ops.sigmoid(pre_scale + 4.0) + 1e-4


class AutoregressivePrior(tracking.Layer):
    """z^m_{1..K-1} [B, K−1, D] -> prior (mean, scale) of z^m_{2..K}, each [B, K−1, D]."""

    def __init__(self, latent_size=64, units=256, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.units = units
        self.lstm = TorchLSTM(units, return_sequences=True, return_state=True,
                              name="lstm")
        self.head = TorchDense(2 * latent_size, name="head")

    def call(self, z_previous, initial_state=None):
        outputs, h, c = self.lstm(z_previous, initial_state=initial_state)
        mean, scale = bounded_gaussian_params(self.head(outputs))
        return mean, scale

    def step(self, z_previous, state):
        """One generation step: z [B, D], state [h, c] -> (mean, scale, new state)."""
        output, h, c = self.lstm(z_previous[:, None, :], initial_state=state)
        mean, scale = bounded_gaussian_params(self.head(output[:, 0]))
        return mean, scale, [h, c]

    def initial_state(self, batch_size, dtype="float32"):
        zeros = ops.zeros((batch_size, self.units), dtype=dtype)
        return [zeros, zeros]

    def sequence_params(self, z):
        """p(z_k | z_<k) for k = 1..K at samples z [B, K, D] -> (mean, scale), each
        [B, K, D] in float32; slot 1's prior is N(0, I)."""
        mean, scale = self(z[:, :-1])  # slots 2..K: [B, K−1, D]
        first = ops.zeros_like(z[:, :1])
        mean = ops.concatenate([first, ops.cast(mean, "float32")], axis=1)
        scale = ops.concatenate([ops.ones_like(first), ops.cast(scale, "float32")], axis=1)
        return mean, scale

    def sample_sequence(self, batch_size, num_slots, noise, dtype="float32"):
        """z_1 ~ N(0, I), z_k ~ p(z_k | z_<k) -> [B, K, D] float32; ``noise(shape)`` gives
        standard normal draws."""
        z = noise(ops.stack([batch_size, self.latent_size]))
        zs = [z]
        state = self.initial_state(batch_size, dtype=dtype)
        for _ in range(1, num_slots):
            mean, scale, state = self.step(z, state)
            mean, scale = ops.cast(mean, "float32"), ops.cast(scale, "float32")
            z = mean + scale * noise(ops.shape(mean))
            zs.append(z)
        return ops.stack(zs, 1)


class ComponentPrior(tracking.Layer):
    """z^m_k [N, Dm] -> prior (mean, scale) of z^c_k, each [N, Dc]."""

    def __init__(self, latent_size=16, hidden=256, **kwargs):
        super().__init__(**kwargs)
        self.mlp = [
            TorchDense(hidden, activation="elu", name="hidden_0"),
            TorchDense(hidden, activation="elu", name="hidden_1"),
            TorchDense(2 * latent_size, name="head"),
        ]

    def call(self, z_mask):
        x = z_mask
        for layer in self.mlp:
            x = layer(x)
        return bounded_gaussian_params(x)
