"""DeepMind's Multi-dSprites files (multi-object-datasets)."""
