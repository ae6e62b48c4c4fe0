"""Models: GENESIS, GENESIS-S, MONet, the VAE baselines, the contract they share and their
structured output."""
from genesis_tf.models.base import SceneModel, config_of, elbo, kl_total
from genesis_tf.models.genesis import Genesis, GenesisS
from genesis_tf.models.monet import MONet
from genesis_tf.models.output import SceneOutput
from genesis_tf.models.vae import BDVAE, DCVAE

# Model classes by name: a run records its model's class name and config, and restoring
# it rebuilds the model from this table.
MODELS = {"Genesis": Genesis, "GenesisS": GenesisS, "MONet": MONet, "BDVAE": BDVAE,
          "DCVAE": DCVAE}

__all__ = ["BDVAE", "DCVAE", "MODELS", "MONet", "Genesis", "GenesisS", "SceneModel",
           "SceneOutput", "config_of", "elbo", "kl_total"]
