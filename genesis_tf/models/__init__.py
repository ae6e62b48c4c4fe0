"""Models: GENESIS, GENESIS-S, the contract they share and their structured output."""
from genesis_tf.models.base import SceneModel, config_of, elbo, kl_total
from genesis_tf.models.genesis import Genesis, GenesisS
from genesis_tf.models.output import SceneOutput

# Model classes by name: a run records its model's class name and config, and restoring
# it rebuilds the model from this table.
MODELS = {"Genesis": Genesis, "GenesisS": GenesisS}

__all__ = ["MODELS", "Genesis", "GenesisS", "SceneModel", "SceneOutput", "config_of", "elbo",
           "kl_total"]
