"""gin registrations (the configurable names that .gin files may use) and config lookup.

Keras classes are registered with gin.external_configurable: @gin.configurable directly on
a Keras 3 Layer/Model subclass crashes at instantiation (IndexError
in keras/src/ops/operation.py, Keras 3.15).

The configs live in the repository's top-level gin_configs/; a built wheel ships a copy as
genesis_tf/gin_configs/ (setup.py). `gin_configs_dir()` finds whichever applies, and
`parse` resolves --gin_file names and `include` lines against it.
"""
import contextlib
import glob
import os

import gin

from genesis_tf.models import MODELS

for _name, _cls in MODELS.items():  # @Genesis, @GenesisS, @MONet, @BDVAE, @DCVAE
    gin.external_configurable(_cls, name=_name, module="genesis_tf.models")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # genesis_tf/
_CHECKOUT_DIR = os.path.dirname(_PACKAGE_DIR)
_CONFIGS = "gin_configs"


def gin_configs_dir():
    """The folder holding the .gin configs: the checkout's gin_configs/ when genesis_tf is
    imported from a source checkout (also an editable install), else the copy installed
    with the package (genesis_tf/gin_configs/)."""
    checkout = os.path.join(_CHECKOUT_DIR, _CONFIGS)
    if os.path.isfile(os.path.join(_CHECKOUT_DIR, "setup.py")) and os.path.isdir(checkout):
        return checkout
    installed = os.path.join(_PACKAGE_DIR, _CONFIGS)
    if os.path.isdir(installed):
        return installed
    raise FileNotFoundError(
        f"no gin configs found: neither {checkout} (source checkout) nor {installed} "
        "(installed package); reinstall genesis_tf"
    )


def __getattr__(name):
    # REPO_GIN_DIR: the former constant, now resolved by gin_configs_dir().
    if name == "REPO_GIN_DIR":
        return gin_configs_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available_configs():
    """The experiment configs (top-level .gin files) that --gin_file can name."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(gin_configs_dir(),
                                                                      "*.gin")))


def resolve_gin_file(path):
    """Absolute path of a --gin_file: as given (relative to the working directory), else
    inside gin_configs_dir() — so 'gqn.gin' and 'gin_configs/gqn.gin' work from anywhere."""
    if os.path.isfile(path):
        return os.path.abspath(path)
    if not os.path.isabs(path):
        configs = gin_configs_dir()
        parts = os.path.normpath(path).split(os.sep)
        candidates = [os.path.join(configs, *parts)]
        if len(parts) > 1 and parts[0] == _CONFIGS:
            candidates.append(os.path.join(configs, *parts[1:]))
        for candidate in candidates:
            if os.path.isfile(candidate):
                return candidate
    raise FileNotFoundError(
        f"gin file {path!r} not found, neither relative to the working directory "
        f"({os.getcwd()}) nor in the shipped configs ({gin_configs_dir()}); available: "
        f"{', '.join(available_configs())} (e.g. --gin_file=gqn.gin)"
    )


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
    file's folder, the working directory and any gin search path added elsewhere."""
    files = [resolve_gin_file(f) for f in gin_files]
    folders = [gin_configs_dir(), *(os.path.dirname(f) for f in files), os.getcwd(),
               *(p for p in gin.config._LOCATION_PREFIXES if p)]
    with _include_search(list(dict.fromkeys(folders))):
        gin.parse_config_files_and_bindings(files, list(gin_bindings))


def configured_model():
    """The model train() builds under the parsed configuration (train.model called with
    train.image_size), with its variables created; for tools that need it before training."""
    image_size = gin.query_parameter("train.image_size")
    if isinstance(image_size, gin.config.ConfigurableReference):  # e.g. %IMAGE_SIZE
        image_size = image_size.scoped_configurable_fn()
    factory = gin.query_parameter("train.model").scoped_configurable_fn
    return factory(image_size=image_size).build_for_images()
