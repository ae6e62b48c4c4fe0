"""Every .gin file parses and trains one step at tiny size."""
import pathlib

import numpy as np
import pytest
from training_helpers import GIN_DIR, parse

from genesis_tf.training import train

EXPERIMENTS = sorted(p.name for p in GIN_DIR.glob("*.gin"))


def test_every_experiment_file_is_covered():
    assert {"multi_dsprites.gin", "gqn.gin", "shapestacks.gin", "smoke.gin", "demo.gin",
            "multi_dsprites_genesis_s.gin", "gqn_genesis_s.gin",
            "shapestacks_genesis_s.gin"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_parses_and_dry_runs_a_step(name, tmp_path, clean_gin):
    text = (GIN_DIR / name).read_text()
    assert text.startswith("#") and "python -m genesis_tf" in text.split("\n\n")[0] or \
        "make demo" in text.split("\n\n")[0], "each file starts with the command that runs it"
    import gin

    parse([name])
    # The paper's values survive the tiny overrides.
    if name != "smoke.gin" and name != "demo.gin":
        assert gin.query_parameter("train.learning_rate") == 1e-4
        assert gin.query_parameter("train.num_steps") == 500000
    gin.clear_config()
    parse([name], ["train.num_steps = 1", "train.image_summary_every = 0"])
    result = train(str(tmp_path))
    assert result.step == 1 and np.isfinite(result.metrics["elbo"])


def test_paper_slot_counts():
    import gin

    expected = {"multi_dsprites.gin": 5, "gqn.gin": 7, "shapestacks.gin": 9}
    for name, slots in expected.items():
        gin.clear_config()
        from genesis_tf.training import config

        config.parse([str(GIN_DIR / name)])
        assert gin.query_parameter("%NUM_SLOTS") == slots
        assert gin.query_parameter("%IMAGE_SIZE") == 64
    gin.clear_config()


def test_gin_dir_layout():
    for sub in ("base", "models", "datasets"):
        assert list(pathlib.Path(GIN_DIR, sub).glob("*.gin")), sub
