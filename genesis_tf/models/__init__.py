"""Models: GENESIS, GENESIS-S and their structured output."""
from genesis_tf.models.genesis import Genesis, GenesisS
from genesis_tf.models.output import SceneOutput

__all__ = ["Genesis", "GenesisS", "SceneOutput"]
