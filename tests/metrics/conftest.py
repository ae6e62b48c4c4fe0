"""Fixtures of the metrics tests."""
import pathlib

import pytest
import tensorflow_datasets as tfds

from tfds_builders.shapestacks import shapestacks_dataset_builder as shapestacks

DUMMY = pathlib.Path(shapestacks.__file__).parent / "dummy_data"


@pytest.fixture(scope="session")
def shapestacks_dir(tmp_path_factory):
    """ShapeStacks built by the real builder from its dummy archives (given as manual
    files, so nothing is downloaded): train 2 scenarios × 2 views, test 1 × 2."""
    root = tmp_path_factory.mktemp("shapestacks")
    builder = shapestacks.Builder(data_dir=str(root))
    builder.download_and_prepare(
        download_dir=str(root / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(DUMMY), compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return str(root)
