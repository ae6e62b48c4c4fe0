"""TFDS builders for the GENESIS datasets; importing this package registers them."""
