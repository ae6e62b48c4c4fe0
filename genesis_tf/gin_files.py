"""Where the .gin configs are and which file a --gin_file names; no TensorFlow, so that the
binaries can check their flags before the seconds of importing it.

The configs live in the repository's top-level gin_configs/; a built wheel ships a copy as
genesis_tf/gin_configs/ (setup.py). `gin_configs_dir()` finds whichever applies.
"""
import glob
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # genesis_tf/
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
