"""What training adds to a run directory: the checks before resuming, the record of each
start's configuration, and restoring the full training state (model, optimizer, GECO,
step). Reading a run back for the tools is genesis_tf.runs."""
import difflib
import os
import sys

import tensorflow as tf

from genesis_tf import runs
from genesis_tf.run_safety import write_atomically
from genesis_tf.runs import OPERATIVE_CONFIG, CheckpointMismatchError

HISTORY_DIR = "config_history"


def check_same_model(model_dir, description):
    """Refuses to resume a run with a model of another class or shape (K, image size,
    latent sizes, ...): one line naming every difference."""
    try:  # what training recorded, when it did: model.json may have been edited since
        stored = runs.trained_description(model_dir) or runs.read_description(model_dir)
    except runs.DamagedRunFileError as error:  # the checkpoint's own check still applies
        print(f"warning: {error}; writing it again from the configured model",
              file=sys.stderr, flush=True)
        return
    if stored is None:
        return
    changes = [f"{key} {old!r} -> {new!r}"
               for key, old, new in runs.description_changes(stored, description)]
    if changes:
        raise CheckpointMismatchError(
            f"--model_dir={model_dir} holds a run of another model ({'; '.join(changes)}). "
            f"Resume it with the configuration in {os.path.join(model_dir, OPERATIVE_CONFIG)}"
            ", or train this model in a new --model_dir."
        )


def record_operative_config(model_dir, config_text, step):
    """Writes the operative config; on a resumed run whose settings changed, keeps the
    previous one as config_history/<step>.gin and returns the changed lines."""
    path = os.path.join(model_dir, OPERATIVE_CONFIG)
    changes = []
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            previous = f.read()
        changes = [line for line in difflib.unified_diff(
            _settings(previous), _settings(config_text), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        if changes:
            history = os.path.join(model_dir, HISTORY_DIR)
            tf.io.gfile.makedirs(history)
            write_atomically(os.path.join(history, f"{step}.gin"), previous)
            with tf.io.gfile.GFile(os.path.join(history, "changes.txt"), "a") as f:
                f.write(f"resumed at step {step}:\n" + "\n".join(changes) + "\n")
    write_atomically(path, config_text)  # a full disk leaves the previous one whole
    return changes


def _settings(config_text):
    return [line for line in config_text.splitlines()
            if line.strip() and not line.startswith("#")]
