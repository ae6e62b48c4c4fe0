"""Models: GENESIS, GENESIS-S, GENESIS-V2, MONet, the VAE baselines, the contract they
share and their structured output."""
from genesis_tf.models.base import SceneModel, config_of, elbo, kl_total
from genesis_tf.models.genesis import Genesis, GenesisS
from genesis_tf.models.genesis_v2 import GenesisV2
from genesis_tf.models.monet import MONet
from genesis_tf.models.output import SceneOutput
from genesis_tf.models.vae import BDVAE, DCVAE

# Model classes by name: a run records its model's class name and config, and restoring
# it rebuilds the model from this table.
MODELS = {"Genesis": Genesis, "GenesisS": GenesisS, "GenesisV2": GenesisV2, "MONet": MONet,
          "BDVAE": BDVAE, "DCVAE": DCVAE}

__all__ = ["BDVAE", "DCVAE", "MODELS", "MONet", "Genesis", "GenesisS", "GenesisV2",
           "SceneModel", "SceneOutput", "config_of", "elbo", "kl_total"]
