"""gin registrations (the configurable names that .gin files may use) and config lookup.

Each component configures itself, as in dopamine's .gin files: the loop is `train.*`
(genesis_tf/training/loop.py), the models `Genesis.*`, `MONet.*`, ..., GECO `GECO.*`
(genesis_tf/geco.py), the optimizer `make_optimizer.*` (genesis_tf/training/optimizers.py)
and the training input pipeline's own knobs `train_dataset.*` (registered below). Names
that moved off `train` (RENAMED) fail in `parse` with one line naming their new home.

Keras classes are registered with gin.external_configurable: @gin.configurable directly on
a Keras 3 Layer/Model subclass crashes at instantiation (IndexError
in keras/src/ops/operation.py, Keras 3.15).

The configs live in the repository's top-level gin_configs/; a built wheel ships a copy as
genesis_tf/gin_configs/ (setup.py). `gin_configs_dir()` (genesis_tf/gin_files.py, free of
TensorFlow) finds whichever applies, and `parse` resolves --gin_file names and `include`
lines against it.
"""
import contextlib
import os
import re

import gin

from genesis_tf import data as _data
from genesis_tf import geco as _geco  # noqa: F401  (registers GECO)
from genesis_tf.errors import UserError
from genesis_tf.gin_files import (  # noqa: F401  (config.* for callers)
    available_configs,
    gin_configs_dir,
    resolve_gin_file,
)
from genesis_tf.models import MODELS
from genesis_tf.training import optimizers as _optimizers  # noqa: F401  (make_optimizer)

for _name, _cls in MODELS.items():  # @Genesis, @GenesisS, @MONet, @BDVAE, @DCVAE
    gin.external_configurable(_cls, name=_name, module="genesis_tf.models")

# The training input pipeline: train() passes what the loop itself needs (dataset, image
# size, batch size, data_dir, seed, the examples to skip on resume); the pipeline's own
# knob binds here.
train_dataset = gin.external_configurable(
    _data.train_dataset, name="train_dataset", module="genesis_tf.data",
    allowlist=["shuffle_buffer"])

# Bindings that moved off train() into the component they configure.
RENAMED = {
    "train.geco_alpha": "GECO.alpha",
    "train.geco_speedup": "GECO.speedup",
    "train.geco_goal_per_pixel": "GECO.goal_per_pixel",
    "train.geco_step_size_scale": "GECO.step_size_scale",
    "train.geco_beta_init": "GECO.beta_init",
    "train.optimizer": "make_optimizer.name",
    "train.learning_rate": "make_optimizer.learning_rate",
    "train.adam_epsilon": "make_optimizer.epsilon",
}
_UNKNOWN_PARAMETER = re.compile(r"Configurable '([\w.]+)' doesn't have a parameter named "
                                r"'(\w+)'")
_IN_FILE = re.compile(r'In file "([^"]+)", line (\d+)')


class ConfigurationError(UserError, ValueError):
    """The gin configuration asks for something that cannot be built."""


@contextlib.contextmanager
def _include_search(folders):
    """While parsing, gin opens every file (top-level ones are absolute here) and every
    `include` through our reader, which looks the name up in `folders` in order.

    gin's own lookup joins the name with each search prefix in turn and, on every miss,
    asks its Python-package reader, which logs "Path not found: …" (or crashes with a
    TypeError when a namespace package of the same name, such as tests/models, is
    importable). Our reader goes first under the single prefix '' and answers every name:
    found in `folders`, else by gin's other readers (package resources), else a clear
    FileNotFoundError.

    gin's public `add_config_file_search_path` and `register_file_reader` cannot do this:
    both append, so the package reader still runs first for the prefix '' (the bug is
    pinned by tests/training/test_gin_configs.py::test_gins_public_search_path_still_has_the_bug,
    which fails once gin stops doing it; then this can become those two calls).
    """
    prefixes, readers = gin.config._LOCATION_PREFIXES, gin.config._FILE_READERS
    saved_prefixes, saved_readers = list(prefixes), list(readers)

    def open_config(name):
        candidates = [name] if os.path.isabs(name) else [os.path.join(f, name)
                                                         for f in folders]
        for candidate in candidates:
            if os.path.isfile(candidate):
                return open(candidate, encoding="utf-8")
        if not os.path.isabs(name):
            for reader, exists in saved_readers:
                if reader is open:
                    continue  # relative to the working directory: among `folders`
                try:
                    if exists(name):
                        return reader(name)
                except Exception:  # gin's package reader can crash (see above)
                    pass
        raise FileNotFoundError(
            f"gin file {name!r} not found; looked in: {', '.join(candidates)}"
        )

    prefixes[:] = [""]
    readers.insert(0, (open_config, lambda name: True))
    try:
        yield
    finally:
        prefixes[:] = saved_prefixes
        readers[:] = saved_readers


def parse(gin_files=(), gin_bindings=()):
    """Parses files and bindings. A file is taken relative to the working directory, else
    from gin_configs_dir(); `include` lines resolve against gin_configs_dir(), then each
    file's folder, the working directory and any gin search path added elsewhere.

    Raises:
      ConfigurationError: a binding of a name in RENAMED (one line naming its replacement).
      ValueError, SyntaxError, FileNotFoundError: gin's own errors.
    """
    files = [resolve_gin_file(f) for f in gin_files]
    folders = [gin_configs_dir(), *(os.path.dirname(f) for f in files), os.getcwd(),
               *(p for p in gin.config._LOCATION_PREFIXES if p)]
    with _include_search(list(dict.fromkeys(folders))):
        try:
            gin.parse_config_files_and_bindings(files, list(gin_bindings))
        except ValueError as error:
            _raise_if_renamed(error)
            raise


def _raise_if_renamed(error):
    """ConfigurationError "train.geco_alpha was renamed: use GECO.alpha" when gin refused
    a binding that RENAMED lists (also written with train's module or a scope)."""
    match = _UNKNOWN_PARAMETER.search(str(error))
    if match:
        old = f"{match.group(1).rsplit('.', 1)[-1]}.{match.group(2)}"
        if old in RENAMED:
            where = _IN_FILE.search(str(error))
            raise ConfigurationError(
                f"{old} was renamed: use {RENAMED[old]}"
                + (f" ({where.group(1)}, line {where.group(2)})" if where else "")) from None


def configured_model_name():
    """The class name train.model names under the parsed configuration (e.g. 'GenesisV2'),
    without building it."""
    return gin.query_parameter("train.model").configurable.name


def configured_model():
    """The model train() builds under the parsed configuration (train.model called with
    train.image_size), with its variables created; for tools that need it before training."""
    image_size = gin.query_parameter("train.image_size")
    if isinstance(image_size, gin.config.ConfigurableReference):  # e.g. %IMAGE_SIZE
        image_size = image_size.scoped_configurable_fn()
    factory = gin.query_parameter("train.model").scoped_configurable_fn
    return factory(image_size=image_size).build_for_images()
