"""sketchy_genesis_v2.gin keeps the paper's Sketchy setting (the dry run of every .gin file
is in test_gin_configs.py)."""
import gin
import numpy as np

from genesis_tf import geco
from tests.helpers.training import GIN_DIR


def test_sketchy_genesis_v2_is_128px_k10_with_the_sketchy_geco_goal(clean_gin):
    from genesis_tf.training import config

    config.parse([str(GIN_DIR / "sketchy_genesis_v2.gin")])
    assert gin.query_parameter("%IMAGE_SIZE") == 128
    assert gin.query_parameter("%NUM_SLOTS") == 10
    assert gin.query_parameter("train.dataset") == "sketchy/paper"
    g = geco.configured_geco(128, 128)  # GECO.* bindings apply
    # The authors' README: goal 0.5645 per pixel and channel for Sketchy (0.5655 elsewhere).
    np.testing.assert_allclose(float(g.goal), 0.5645 * 128 * 128 * 3, rtol=1e-6)
