"""DeepMind's Objects Room (multi-object-datasets)."""
