r"""GENESIS-V2's forward pass in PyTorch, written from the specification
(../shared/GENESIS_V2.md §1), with the state-dict keys and shapes of the authors' model
(§4) — an independent implementation to test the converter and the Keras model against,
on equal weights and the same uniform draw. Not the authors' code (GPL): nothing here is
taken from it.

NCHW throughout. ``TorchGenesisV2(image_size, num_slots)(images, uniform, noise=None)``
takes images [B, 3, S, S] in [0, 1], the IC-SBP's draw u [B, 1, S, S] and optionally the
posterior noise ε [B, K, F] (none: z = μ), and returns a dict of

    recon [B, 3, S, S]; log_masks (decoded) and ic_sbp_log_masks, each [B, K, 1, S, S];
    mu, sigma, z [B, K, F]; err, kl [B] (nats per image, kl summed over the K slots).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 64  # F, the reference's feat_dim: also the latent size
EMBEDDING = 8
PIXEL_STD = 0.7
# §1.1: (in, out) channels of the U-Net's blocks, down then up, per image size.
UNET_CHANNELS = {
    32: ([(3, 64), (64, 128), (128, 128), (128, 128)],
         [(256, 128), (256, 128), (256, 64), (128, 64)]),
    64: ([(3, 64), (64, 64), (64, 128), (128, 128), (128, 128)],
         [(256, 128), (256, 128), (256, 64), (128, 64), (128, 64)]),
    128: ([(3, 64), (64, 64), (64, 64), (64, 128), (128, 128), (128, 128)],
          [(256, 128), (256, 128), (256, 64), (128, 64), (128, 64), (128, 64)]),
}
BOTTLENECK = 4  # the last down block runs at 4×4 at every size


def conv_gn_relu(inputs, outputs):
    """3×3 conv without bias, GroupNorm(8, ε 1e-5), ReLU: keys .0, .1."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                         nn.GroupNorm(8, outputs, eps=1e-5), nn.ReLU())


def coordinates(size):
    """[2, size, size]: linspace(−1, 1) varying along rows, then along columns."""
    line = torch.linspace(-1.0, 1.0, size)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([rows, cols])


class UNet(nn.Module):
    """images [B, 3, S, S] -> ReLU(features) [B, 64, S, S]; keys down.i, up.i, mlp.1/3/5."""

    def __init__(self, image_size):
        super().__init__()
        down, up = UNET_CHANNELS[image_size]
        self.down = nn.ModuleList(conv_gn_relu(i, o) for i, o in down)
        self.up = nn.ModuleList(conv_gn_relu(i, o) for i, o in up)
        bottom = down[-1][1]
        flat = bottom * BOTTLENECK * BOTTLENECK
        self.bottom = bottom
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(),
                                 nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, flat),
                                 nn.ReLU())

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        x = self.mlp(x).view(-1, self.bottom, BOTTLENECK, BOTTLENECK)  # flattened C, H, W
        for i, block in enumerate(self.up):
            x = block(torch.cat([x, skips[-1 - i]], dim=1))
            if i < len(self.up) - 1:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(x)


class Gate(nn.Module):
    """A learnt scalar, key ``gate`` (init 0)."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(()))


class ColourHead(nn.Module):
    """Gated 1×1 conv plus fixed coordinates in the last two channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(FEATURES, EMBEDDING, 1)
        self.gate = Gate()

    def forward(self, x):
        size = x.shape[-1]
        uv = torch.zeros(1, EMBEDDING, size, size)
        uv[0, -2:] = coordinates(size)
        return self.conv(x) * self.gate.gate + uv


class AttentionProcess(nn.Module):
    """The IC-SBP with a gaussian kernel (§1.3): log_sigma (float64), colour_head."""

    def __init__(self, num_slots):
        super().__init__()
        sigma_0 = 1.0 / (num_slots * math.log(2.0))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma_0), dtype=torch.float64))
        self.colour_head = ColourHead()

    def forward(self, embedding, uniform, num_slots):
        batch, channels = embedding.shape[:2]
        flat = embedding.view(batch, channels, -1)  # [B, D, H·W], row-major pixels
        sigma = self.log_sigma.exp()
        log_scope = torch.zeros_like(uniform)
        log_masks = []
        for _ in range(num_slots - 1):
            with torch.no_grad():
                seed = (uniform * log_scope.exp()).view(batch, -1).argmax(dim=1)  # [B]
            seed_embedding = flat[torch.arange(batch), :, seed]  # [B, D], with gradient
            distance = ((embedding - seed_embedding[:, :, None, None]) ** 2).sum(
                dim=1, keepdim=True)  # [B, 1, H, W]
            alpha = torch.exp(-distance / sigma)
            alpha = alpha + (alpha.clamp(0.01, 0.99) - alpha).detach()  # straight-through
            log_masks.append(log_scope + alpha.log())
            log_scope = log_scope + (1.0 - alpha).log()
        log_masks.append(log_scope)
        return torch.stack(log_masks, dim=1)  # [B, K, 1, H, W]


class Broadcast(nn.Module):
    """z [N, F] -> [N, F + 2, g, g]: tiled, then the coordinate channels."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, z):
        tiled = z[:, :, None, None].expand(-1, -1, self.size, self.size)
        grid = coordinates(self.size)[None].expand(z.shape[0], -1, -1, -1)
        return torch.cat([tiled, grid], dim=1)


def decoder(image_size):
    """decoder_module.0 (broadcast), .1/.4/.7/.10 transposed convs, .2/.5/.8/.11 group
    norms, .13 the 1×1 output conv."""
    layers = [Broadcast(image_size // 16)]
    inputs = FEATURES + 2
    for _ in range(4):
        layers += [nn.ConvTranspose2d(inputs, FEATURES, 5, stride=2, padding=2,
                                      output_padding=1),
                   nn.GroupNorm(8, FEATURES, eps=1e-5), nn.ReLU()]
        inputs = FEATURES
    layers.append(nn.Conv2d(FEATURES, 4, 1))
    return nn.Sequential(*layers)


def gaussian_log_prob(x, mean, scale):
    return (-0.5 * ((x - mean) / scale) ** 2 - torch.log(scale)
            - 0.5 * math.log(2.0 * math.pi))


class TorchGenesisV2(nn.Module):
    """The whole model; module order is the reference's state-dict order (§4)."""

    def __init__(self, image_size=64, num_slots=7):
        super().__init__()
        self.image_size, self.num_slots = image_size, num_slots
        self.encoder = UNet(image_size)
        self.att_process = AttentionProcess(num_slots)
        self.seg_head = nn.Sequential(nn.Conv2d(FEATURES, FEATURES, 3, padding=1, bias=False),
                                      nn.GroupNorm(8, FEATURES, eps=1e-5), nn.ReLU())
        self.feat_head = nn.Sequential(conv_gn_relu(FEATURES, FEATURES),
                                       nn.Conv2d(FEATURES, 2 * FEATURES, 1))
        self.z_head = nn.Sequential(nn.LayerNorm(2 * FEATURES, eps=1e-5),
                                    nn.Linear(2 * FEATURES, 2 * FEATURES), nn.ReLU(),
                                    nn.Linear(2 * FEATURES, 2 * FEATURES))
        self.decoder_module = decoder(image_size)
        self.prior_lstm = nn.LSTM(FEATURES, 4 * FEATURES)
        self.prior_linear = nn.Linear(4 * FEATURES, 2 * FEATURES)

    def posterior(self, features, ic_sbp_log_masks):
        """Masked means of the feature head's map -> (μ, σ), each [B, K, F]."""
        feat = self.feat_head(features)  # [B, 2F, S, S]
        masks = ic_sbp_log_masks.exp()  # [B, K, 1, S, S]
        pooled = ((masks * feat[:, None]).sum(dim=(3, 4))
                  / (masks.sum(dim=(3, 4)) + 1e-5))  # [B, K, 2F]
        mu, pre_sigma = self.z_head(pooled).chunk(2, dim=-1)
        return mu, F.softplus(pre_sigma + 0.5) + 1e-8

    def prior(self, z):
        """(mean, scale) of p(z_k | z_<k) for k = 1..K, each [B, K, F]."""
        batch, num_slots = z.shape[:2]
        mean, scale = torch.zeros_like(z[:, :1]), torch.ones_like(z[:, :1])
        if num_slots == 1:
            return mean, scale
        hidden, _ = self.prior_lstm(z[:, :-1].transpose(0, 1))  # sequence first, zero state
        raw = self.prior_linear(hidden).transpose(0, 1)  # [B, K−1, 2F]
        loc, pre_scale = raw.chunk(2, dim=-1)
        return (torch.cat([mean, torch.tanh(loc)], dim=1),
                torch.cat([scale, torch.sigmoid(pre_scale + 4.0) + 1e-4], dim=1))

    def decode(self, z):
        """z [B, K, F] -> (components [B, K, 3, S, S], decoded log masks [B, K, 1, S, S])."""
        batch, num_slots = z.shape[:2]
        out = self.decoder_module(z.reshape(batch * num_slots, -1))
        out = out.view(batch, num_slots, 4, self.image_size, self.image_size)
        return torch.sigmoid(out[:, :, :3]), F.log_softmax(out[:, :, 3:], dim=1)

    def forward(self, images, uniform, noise=None, num_slots=None):
        num_slots = num_slots or self.num_slots
        features = self.encoder(images)
        embedding = self.att_process.colour_head(self.seg_head(features))
        ic_sbp_log_masks = self.att_process(embedding, uniform, num_slots)
        mu, sigma = self.posterior(features, ic_sbp_log_masks)
        z = mu if noise is None else mu + sigma * noise
        components, log_masks = self.decode(z)
        pixel = gaussian_log_prob(images[:, None], components, torch.tensor(PIXEL_STD))
        err = -torch.logsumexp(log_masks + pixel, dim=1).sum(dim=(1, 2, 3))
        prior_mean, prior_scale = self.prior(z)
        kl = (gaussian_log_prob(z, mu, sigma)
              - gaussian_log_prob(z, prior_mean, prior_scale)).sum(dim=(1, 2))
        return {"recon": (log_masks.exp() * components).sum(dim=1), "log_masks": log_masks,
                "ic_sbp_log_masks": ic_sbp_log_masks, "mu": mu, "sigma": sigma, "z": z,
                "err": err, "kl": kl}


def randomise(model, seed=0, gate=0.7):
    """Moves the weights off PyTorch's initialisation where it would hide a mapping error:
    norms' γ and β random (γ = 1, β = 0 would hide a swap or a permutation), the colour
    gate to `gate` (at 0 the colour conv and seg_head do not matter), log σ shifted."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape,
                                                            generator=generator))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
        model.att_process.colour_head.gate.gate.fill_(gate)
        model.att_process.log_sigma.add_(0.1)
    return model
