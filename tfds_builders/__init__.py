"""TFDS builders for the GENESIS datasets; importing this package registers them.

    import tensorflow_datasets as tfds
    import tfds_builders  # noqa: F401
    ds = tfds.load("multi_dsprites/offline_colored", split="train")
"""
from tfds_builders.apc import apc_dataset_builder  # noqa: F401
from tfds_builders.clevr_with_masks import clevr_with_masks_dataset_builder  # noqa: F401
from tfds_builders.dm_multi_dsprites import dm_multi_dsprites_dataset_builder  # noqa: F401
from tfds_builders.gqn_rooms_ring_camera import (  # noqa: F401
    gqn_rooms_ring_camera_dataset_builder,
)
from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder  # noqa: F401
from tfds_builders.objects_room import objects_room_dataset_builder  # noqa: F401
from tfds_builders.shapestacks import shapestacks_dataset_builder  # noqa: F401
from tfds_builders.sketchy import sketchy_dataset_builder  # noqa: F401
from tfds_builders.tetrominoes import tetrominoes_dataset_builder  # noqa: F401
