"""Every .gin file parses and trains one step at tiny size; config files and includes
resolve without failed lookups."""
import logging
import os
import pathlib
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest

from genesis_tf.training import train
from genesis_tf.training.config import RENAMED
from tests.helpers.training import GIN_DIR, ROOT, parse

EXPERIMENTS = sorted(p.name for p in GIN_DIR.glob("*.gin"))
_DRY_RUNS = {}  # gin config after the tiny overrides -> its one-step TrainResult


def test_every_experiment_file_is_covered():
    datasets = ("multi_dsprites", "gqn", "shapestacks")
    assert {"multi_dsprites.gin", "gqn.gin", "shapestacks.gin", "smoke.gin", "demo.gin",
            "multi_dsprites_monet_paper.gin"} <= set(EXPERIMENTS)
    for model in ("genesis_s", "monet", "bd_vae", "dc_vae"):  # the paper's comparisons
        assert {f"{d}_{model}.gin" for d in datasets} <= set(EXPERIMENTS), model


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_parses_and_dry_runs_a_step(name, tmp_path, clean_gin):
    text = (GIN_DIR / name).read_text()
    assert text.startswith("#") and "python -m genesis_tf" in text.split("\n\n")[0] or \
        "make demo" in text.split("\n\n")[0], "each file starts with the command that runs it"
    import gin

    parse([name])
    # The paper's values survive the tiny overrides.
    if name != "smoke.gin" and name != "demo.gin":
        assert gin.query_parameter("make_optimizer.learning_rate") == 1e-4
        # The MONet paper trains for 10⁶ steps, the GENESIS paper every model for 5·10⁵.
        paper_steps = 1000000 if name.endswith("_monet_paper.gin") else 500000
        assert gin.query_parameter("train.num_steps") == paper_steps
    gin.clear_config()
    # GECO's goal too (Sketchy's differs; tests/training/test_genesis_v2_training.py checks
    # it): one dry run for every dataset of a model.
    parse([name], ["train.num_steps = 1", "train.image_summary_every = 0",
                   "GECO.goal_per_pixel = 0.5655"])
    # The tiny overrides replace what a dataset file sets (dataset, size, K), so the files
    # of one model on the three datasets give the same configuration here: it trains once.
    key = gin.config_str()
    if key not in _DRY_RUNS:
        _DRY_RUNS[key] = train(str(tmp_path))
    result = _DRY_RUNS[key]
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


@pytest.mark.parametrize("files, bindings, name", [
    (["demo.gin"], [], "Genesis"),
    (["demo.gin"], ["train.model = @GenesisV2"], "GenesisV2"),
    (["multi_dsprites_monet.gin"], [], "MONet"),
])
def test_configured_model_name_without_building_it(files, bindings, name, clean_gin):
    from genesis_tf.training import config

    config.parse([str(GIN_DIR / f) for f in files], bindings)
    assert config.configured_model_name() == name


def test_gin_dir_layout():
    for sub in ("base", "models", "datasets"):
        assert list(pathlib.Path(GIN_DIR, sub).glob("*.gin")), sub


def test_configs_dir_is_the_checkouts():
    from genesis_tf.training import config

    assert pathlib.Path(config.gin_configs_dir()) == GIN_DIR
    assert not hasattr(config, "REPO_GIN_DIR")  # the former constant's shim is gone


def test_gin_file_by_name_from_another_directory(tmp_path, monkeypatch, clean_gin):
    import gin

    from genesis_tf.training import config

    monkeypatch.chdir(tmp_path)
    for name in ("gqn.gin", "gin_configs/gqn.gin", str(GIN_DIR / "gqn.gin")):
        gin.clear_config()
        config.parse([name])
        assert gin.query_parameter("%NUM_SLOTS") == 7
    # A file in the working directory wins over a shipped one of the same name.
    (tmp_path / "gqn.gin").write_text("include 'gqn.gin'\nNUM_SLOTS = 2\n")
    gin.clear_config()
    config.parse(["gqn.gin"])
    assert gin.query_parameter("%NUM_SLOTS") == 2


def test_missing_gin_file_lists_the_available_configs(tmp_path, monkeypatch):
    from genesis_tf.training import config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        config.parse(["gin_configs/nope.gin"])
    message = str(error.value)
    assert "nope.gin" in message and "gqn.gin" in message and "demo.gin" in message


def test_own_config_includes_shipped_and_local_files(tmp_path, monkeypatch, caplog,
                                                     clean_gin):
    """A user's config elsewhere includes a shipped fragment and one next to it, found on
    the first lookup; gin's global search state is left as it was."""
    import gin

    from genesis_tf.training import config

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "local.gin").write_text("NUM_SLOTS = 3\n")
    (tmp_path / "mine" / "exp.gin").write_text(
        "include 'gqn.gin'\ninclude 'local.gin'\ntrain.batch_size = 2\n")
    monkeypatch.chdir(tmp_path)
    prefixes = list(gin.config._LOCATION_PREFIXES)
    readers = list(gin.config._FILE_READERS)
    with caplog.at_level(logging.DEBUG):
        config.parse(["mine/exp.gin"])
    assert gin.query_parameter("%NUM_SLOTS") == 3
    assert gin.query_parameter("train.batch_size") == 2
    assert gin.query_parameter("make_optimizer.learning_rate") == 1e-4  # via gqn.gin
    assert "Path not found" not in caplog.text
    assert "system_path_file_exists" not in caplog.text
    assert gin.config._LOCATION_PREFIXES == prefixes
    assert gin.config._FILE_READERS == readers


def test_missing_include_is_a_clear_error(tmp_path, clean_gin):
    from genesis_tf.training import config

    (tmp_path / "exp.gin").write_text("include 'models/nope.gin'\n")
    with pytest.raises(FileNotFoundError, match="models/nope.gin") as error:
        config.parse([str(tmp_path / "exp.gin")])
    assert str(GIN_DIR) in str(error.value)


_PARSE_ALL = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG)  # gin logs its failed lookups at INFO/ERROR
    import gin
    from genesis_tf.training import config
    for name in sys.argv[1:]:
        gin.clear_config()
        config.parse([name])
    print("parsed", len(sys.argv) - 1)
""")


def test_parsing_prints_no_failed_include_lookups():
    """Includes resolve on the first try: no "Path not found" lines from gin's package
    reader (as `python -m genesis_tf.train --gin_file=gin_configs/smoke.gin` printed)."""
    names = [f"gin_configs/{n}" for n in EXPERIMENTS] + EXPERIMENTS
    result = subprocess.run([sys.executable, "-c", _PARSE_ALL, *names], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"parsed {len(names)}" in result.stdout
    assert "Path not found" not in result.stderr
    assert "system_path_file_exists" not in result.stderr


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_a_renamed_binding_names_its_replacement(old, tmp_path, clean_gin):
    from genesis_tf.training import config

    new = RENAMED[old]
    with pytest.raises(config.ConfigurationError) as error:
        config.parse(["smoke.gin"], [f"{old} = 1"])
    assert str(error.value) == f"{old} was renamed: use {new}"
    # In a user's file, the line says where.
    (tmp_path / "mine.gin").write_text(f"include 'smoke.gin'\n{old} = 1\n")
    gin.clear_config()
    with pytest.raises(ValueError, match=rf"^{old} was renamed: use {new} \(.*mine.gin, "
                                         r"line 2\)$"):
        config.parse([str(tmp_path / "mine.gin")])
    # The replacement is a binding gin accepts.
    gin.clear_config()
    value = "'torch_adam'" if new == "make_optimizer.name" else "1.0"
    config.parse(["smoke.gin"], [f"{new} = {value}"])


def test_geco_and_the_optimizer_take_their_own_bindings(clean_gin):
    from genesis_tf.geco import configured_geco
    from genesis_tf.training import config
    from genesis_tf.training.optimizers import TorchRMSprop, make_optimizer

    config.parse(["smoke.gin"], ["GECO.alpha = 0.5", "GECO.goal_per_pixel = 0.25",
                                 "make_optimizer.name = 'torch_rmsprop'",
                                 "make_optimizer.learning_rate = 3e-3"])
    geco = configured_geco(32, 32)
    assert geco.alpha == 0.5 and geco.goal == pytest.approx(0.25 * 32 * 32 * 3)
    optimizer = make_optimizer()
    assert isinstance(optimizer, TorchRMSprop)
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(3e-3)


def test_gins_public_search_path_still_has_the_bug(tmp_path, monkeypatch, caplog, clean_gin):
    """Why config._include_search patches gin's private lists instead of calling
    gin.add_config_file_search_path: with the public call, an `include` is first asked of
    gin's package reader, which logs "Path not found" and crashes with a TypeError when a
    namespace package of the include's folder name is importable. When this test fails,
    gin has fixed it: replace _include_search by the public calls."""
    from genesis_tf.training import config  # noqa: F401  (the gin names the files bind)

    (tmp_path / "exp.gin").write_text("include 'base/optimisation.gin'\n")
    (tmp_path / "crash.gin").write_text("include 'models/genesis.gin'\n")
    (tmp_path / "namespace" / "models").mkdir(parents=True)  # no __init__.py
    monkeypatch.syspath_prepend(str(tmp_path / "namespace"))
    prefixes = list(gin.config._LOCATION_PREFIXES)
    try:
        gin.add_config_file_search_path(str(GIN_DIR))
        with caplog.at_level(logging.DEBUG):
            gin.parse_config_file(str(tmp_path / "exp.gin"))
        assert gin.query_parameter("make_optimizer.learning_rate") == 1e-4  # found, but:
        assert "Path not found: base/optimisation.gin" in caplog.text
        with pytest.raises(TypeError):
            gin.parse_config_file(str(tmp_path / "crash.gin"))
    finally:
        gin.config._LOCATION_PREFIXES[:] = prefixes


def test_build_md_worked_example_sets_geco_and_the_learning_rate(tmp_path, monkeypatch,
                                                                 clean_gin):
    """BUILD.md's gin section: its command-line bindings and its own-file example."""
    import re

    from genesis_tf.training import config

    text = (ROOT / "BUILD.md").read_text()
    section = text[text.index("### Configuration names (gin)"):]
    command, own_file = re.findall(r"```\n(.*?)```", section, re.S)[:2]
    bindings = re.findall(r"--gin_bindings='([^']+)'", command)
    assert "--gin_file=gin_configs/multi_dsprites.gin" in command and len(bindings) == 2
    (tmp_path / "my_goal.gin").write_text(own_file)
    monkeypatch.chdir(tmp_path)
    for files, extra in ((["multi_dsprites.gin"], bindings), (["my_goal.gin"], [])):
        gin.clear_config()
        config.parse(files, extra)
        assert gin.query_parameter("GECO.goal_per_pixel") == 0.5
        assert gin.query_parameter("make_optimizer.learning_rate") == 5e-5
        assert gin.query_parameter("%NUM_SLOTS") == 5


# GENESIS-V2's real-world datasets with each model the reference trains on them (issue 32):
# file -> (model class name, dataset, GECO goal per pixel and channel).
REAL_WORLD = {
    "sketchy_genesis_v2.gin": ("GenesisV2", "sketchy/paper", 0.5645),
    "sketchy_genesis.gin": ("Genesis", "sketchy/paper", 0.5645),
    "sketchy_monet.gin": ("MONet", "sketchy/paper", 0.5645),
    "apc_genesis_v2.gin": ("GenesisV2", "apc", 0.5655),
    "apc_genesis.gin": ("Genesis", "apc", 0.5655),
    "apc_monet.gin": ("MONet", "apc", 0.5655),
}


def test_every_real_world_experiment_is_listed():
    shipped = {n for n in EXPERIMENTS if n.startswith(("sketchy_", "apc_"))}
    assert shipped == set(REAL_WORLD)


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_experiment_builds_its_model_at_128_with_ten_slots(name, clean_gin):
    from genesis_tf.geco import configured_geco
    from genesis_tf.training import config

    model_class, dataset, goal_per_pixel = REAL_WORLD[name]
    config.parse([name])
    assert gin.query_parameter("train.dataset") == dataset
    image_size = gin.get_bindings("train")["image_size"]
    model = gin.query_parameter("train.model").scoped_configurable_fn(image_size=image_size)
    assert type(model).__name__ == model_class
    assert (model.image_size, model.num_slots) == (128, 10)
    assert configured_geco(128, 128).goal == pytest.approx(goal_per_pixel * 3 * 128 ** 2)
