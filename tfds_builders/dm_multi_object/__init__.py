"""Shared reader of DeepMind's multi-object-datasets TFRecords (used by objects_room,
clevr_with_masks, dm_multi_dsprites and tetrominoes)."""
