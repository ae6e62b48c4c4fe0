"""DeepMind's CLEVR (with masks) (multi-object-datasets)."""
