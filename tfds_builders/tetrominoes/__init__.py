"""DeepMind's Tetrominoes (multi-object-datasets)."""
