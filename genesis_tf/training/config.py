"""gin registrations: the configurable names that .gin files may use.

Keras classes are registered with gin.external_configurable: @gin.configurable directly on
a Keras 3 Layer/Model subclass crashes at instantiation (PITFALLS.md).
"""
import os

import gin

from genesis_tf.models import Genesis, GenesisS

gin.external_configurable(Genesis, module="genesis_tf.models")
gin.external_configurable(GenesisS, module="genesis_tf.models")

# The repository's gin_configs/ (next to the package) for `include` lines.
REPO_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "gin_configs")


def parse(gin_files=(), gin_bindings=()):
    """Parses files and bindings; `include` lines resolve against each file's folder and
    the repository's gin_configs/."""
    search = [REPO_GIN_DIR] + [os.path.dirname(os.path.abspath(f)) for f in gin_files]
    # Our folders go before gin's default '' (the working directory): otherwise gin asks
    # its Python-package reader about 'models/genesis.gin' first, which crashes when a
    # namespace package called `models` is importable (as tests/models is under pytest).
    prefixes = gin.config._LOCATION_PREFIXES
    for path in reversed(list(dict.fromkeys(search))):
        if os.path.isdir(path) and path not in prefixes:
            prefixes.insert(0, path)
    for f in gin_files:
        if not os.path.exists(f):
            raise FileNotFoundError(
                f"gin file {f!r} not found; the configs live in gin_configs/ "
                "(e.g. --gin_file=gin_configs/gqn.gin)"
            )
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings))
