"""Trained weights in one small file, and training that starts from them.

A weights file (.npz) holds every model variable but the random generators' states
(float16 by default: half the size, enough for a starting point), the model's description
(model.json), the training step and GECO's state, keyed by variable path below the model.
The demo starts from one (genesis_tf.demo --weights).

    python -m genesis_tf.tools.write_weights --model_dir=RUN --output=weights.npz
        writes the file from the run's latest checkpoint (or --checkpoint=PATH;
        save_from_run here);
    train.warm_start = 'weights.npz'   (gin)
        starts a run whose model_dir has no checkpoint yet from the file: its weights,
        step and GECO state; the optimizer starts afresh. A run with a checkpoint resumes
        from the checkpoint as always.
"""
import json
import os
import sys

import numpy as np

from genesis_tf.errors import UserError

DESCRIPTION_KEY = "__model_json__"
STATE_KEYS = {"step": "__step__", "beta": "__geco_beta__", "err_ema": "__geco_err_ema__"}


def weights_of(model):
    """{key: variable} for the model's variables, keyed by their path below the model
    ('mask_encoder/.../kernel'): the model's own Keras name ('genesis_1') depends on how
    many were built before in the process. Keras's random-generator states are left out:
    their paths are numbered per process and they hold nothing learned."""
    weights = {}
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            continue
        key = variable.path.split("/", 1)[1] if "/" in variable.path else variable.path
        if key in weights:
            raise ValueError(f"two variables share the path {key}")
        weights[key] = variable
    return weights


class WarmStartError(UserError, ValueError):
    """The weights file is missing, unreadable or holds another model."""


def save(model, path, step=0, beta=1.0, err_ema=0.0, dtype=np.float16):
    """Writes `model`'s variables (floats as `dtype`) with its description and the training
    state to `path` (.npz, compressed); returns the path."""
    from genesis_tf.models import config_of

    arrays = {}
    for key, variable in weights_of(model).items():
        value = variable.numpy()
        arrays[key] = value.astype(dtype) if value.dtype.kind == "f" else value
    arrays[DESCRIPTION_KEY] = np.array(json.dumps(config_of(model), sort_keys=True))
    arrays[STATE_KEYS["step"]] = np.int64(step)
    arrays[STATE_KEYS["beta"]] = np.float32(beta)
    arrays[STATE_KEYS["err_ema"]] = np.float32(err_ema)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    partial = path + ".partial.npz"
    np.savez_compressed(partial, **arrays)
    os.replace(partial, path)
    return path


def read(path, what="train.warm_start"):
    """(arrays by variable path, description dict, {'step', 'beta', 'err_ema'}); `what`
    names the setting that gave the path in error messages."""
    if not os.path.isfile(path):
        raise WarmStartError(f"{what}: {path} does not exist (write one with "
                             "python -m genesis_tf.tools.write_weights --model_dir=RUN "
                             "--output=FILE)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        description = json.loads(str(arrays.pop(DESCRIPTION_KEY)))
        state = {name: arrays.pop(key).item() for name, key in STATE_KEYS.items()}
    except (OSError, ValueError, KeyError) as error:
        raise WarmStartError(f"{what}: {path} is not a genesis_tf weights file "
                             f"({str(error).splitlines()[0]})") from None
    return arrays, description, state


def load_into(model, path, what="train.warm_start"):
    """Assigns the file's weights to `model` after checking it is the same model; returns
    the training state {'step', 'beta', 'err_ema'}."""
    from genesis_tf import runs
    from genesis_tf.models import config_of

    arrays, description, state = read(path, what)
    changes = runs.description_changes(description, config_of(model))
    if changes:
        named = ", ".join(f"{key}={saved!r} (configured: {configured!r})"
                          for key, saved, configured in changes)
        raise WarmStartError(
            f"{what}: {path} holds a {description.get('class_name')} with {named}; the gin "
            "configuration builds another model. Use the configuration the weights were "
            "trained with.")
    weights = weights_of(model)
    missing = [key for key in weights if key not in arrays]
    if missing:
        raise WarmStartError(f"{what}: {path} lacks {len(missing)} variables "
                             f"(first: {missing[0]})")
    for key, variable in weights.items():
        value = arrays[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise WarmStartError(f"{what}: {key} has shape "
                                 f"{value.shape} in {path}, the model {variable.shape}")
        variable.assign(value.astype(variable.dtype))
    return state


def save_from_run(model_dir, output, checkpoint=None):
    """The weights file of a run's latest checkpoint (or `checkpoint`)."""
    from genesis_tf import runs

    model, _, state = runs.restore_with_state(model_dir, checkpoint)
    save(model, output, step=state.get("step", 0), beta=state.get("geco_beta", 1.0),
         err_ema=state.get("geco_err_ema", 0.0))
    return output, state.get("step", 0)


if __name__ == "__main__":  # the former command: say where it went
    print("error: the weights writer moved: python -m genesis_tf.tools.write_weights "
          "--model_dir=RUN --output=FILE (or genesis-write-weights)", file=sys.stderr)
    sys.exit(2)
