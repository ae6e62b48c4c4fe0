"""What a run directory holds, and restoring a trained model from it in any process.

    model_dir/
      model.json              the model's class and constructor arguments (get_config)
      operative_config.gin    the full gin configuration of the latest start
      config_history/         earlier operative configs, one per resumed start that
                              changed a setting (<step>.gin), and changes.txt
      ckpt-<step>.{index,data-*}, checkpoint    tf.train.Checkpoint: model (every
                              variable, batch-norm statistics included), optimizer,
                              GECO, step
      train/, val/            TensorBoard summaries

    from genesis_tf.training import restore
    model = restore("runs/gqn")             # the latest checkpoint, in a fresh process
    model = restore("runs/gqn", checkpoint="runs/gqn/ckpt-5000")
"""
import difflib
import gc
import json
import os

import tensorflow as tf

MODEL_FILE = "model.json"
OPERATIVE_CONFIG = "operative_config.gin"
HISTORY_DIR = "config_history"


class CheckpointMismatchError(RuntimeError):
    """model_dir holds a checkpoint of a different model or configuration."""


def _models():
    from genesis_tf.models import MODELS

    return MODELS


def describe(model):
    """{'class_name': ..., 'config': {...}}: what is needed to rebuild `model`."""
    from genesis_tf.models import config_of

    return config_of(model)


def read_description(model_dir):
    path = os.path.join(model_dir, MODEL_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def write_description(model_dir, description):
    with tf.io.gfile.GFile(os.path.join(model_dir, MODEL_FILE), "w") as f:
        json.dump(description, f, indent=2, sort_keys=True)
        f.write("\n")


def description_changes(old, new):
    """[(key, old value, new value)] for every constructor argument (and 'class') that
    differs between two model descriptions, sorted by key. The Keras name ('genesis_3')
    differs between processes and is not part of the model, so it is left out."""
    old = {"class": old["class_name"], **old.get("config", {}), "name": None}
    new = {"class": new["class_name"], **new.get("config", {}), "name": None}
    return [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def check_same_model(model_dir, description):
    """Refuses to resume a run with a model of another class or shape (K, image size,
    latent sizes, ...): one line naming every difference."""
    stored = read_description(model_dir)
    if stored is None:
        return
    changes = [f"{key} {old!r} -> {new!r}"
               for key, old, new in description_changes(stored, description)]
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
            tf.io.gfile.copy(path, os.path.join(history, f"{step}.gin"), overwrite=True)
            with tf.io.gfile.GFile(os.path.join(history, "changes.txt"), "a") as f:
                f.write(f"resumed at step {step}:\n" + "\n".join(changes) + "\n")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(config_text)
    return changes


def run_setting(model_dir, name, default=None):
    """A binding of the run's latest start, read from its operative_config.gin
    ('train.dataset' -> 'multi_dsprites/colored'); `default` when absent."""
    import ast

    path = os.path.join(model_dir, OPERATIVE_CONFIG)
    if not tf.io.gfile.exists(path):
        return default
    with tf.io.gfile.GFile(path) as f:
        text = f.read().replace("\\\n", " ")  # gin continues long values with a backslash
    for line in text.splitlines():
        if line.startswith(name + " = "):
            value = line.split(" = ", 1)[1].strip()
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value  # a reference such as @Genesis or %IMAGE_SIZE
    return default


def _settings(config_text):
    return [line for line in config_text.splitlines()
            if line.strip() and not line.startswith("#")]


def weight_count(model):
    """The model's variables that a checkpoint must hold (the random-number generators'
    states of Keras layers are not weights)."""
    return sum(1 for v in model.variables if "seed_generator" not in v.path)


def saved_model_variables(path, child="model"):
    """How many variables the checkpoint at `path` holds below its root's `child`.

    Counted in the checkpoint's object graph, not by key name: TensorFlow names each value
    by its shortest path, so trainable weights appear under optimizer/ when an optimizer
    is saved beside the model.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    starts = [ref.node_id for ref in graph.nodes[0].children if ref.local_name == child]
    seen, queue, count = set(starts), list(starts), 0
    while queue:
        node = graph.nodes[queue.pop()]
        count += any(a.name == "VARIABLE_VALUE" for a in node.attributes)
        for ref in node.children:
            if ref.node_id not in seen:
                seen.add(ref.node_id)
                queue.append(ref.node_id)
    return count


def check_holds_model(path, model, model_dir=None):
    """Raises CheckpointMismatchError unless the checkpoint has every model variable."""
    saved = saved_model_variables(path)
    expected = weight_count(model)
    if saved != expected:
        raise CheckpointMismatchError(
            f"the checkpoint {path} holds {saved} of the model's {expected} variables "
            "(checkpoints written before genesis_tf tracked every layer lack the batch-norm "
            "statistics and most weights); train again in a new --model_dir"
            + ("" if model_dir is None else f" instead of {model_dir}") + "."
        )


def restore_into(checkpoint, path, model, model_dir=None):
    """checkpoint.restore(path) for a training checkpoint object that tracks `model` as
    'model'; refuses files that do not hold every model variable."""
    check_holds_model(path, model, model_dir)
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise CheckpointMismatchError(
            f"the checkpoint {path} does not fit the configured model "
            f"({str(error).splitlines()[0][:300]}). Use a new --model_dir, or the gin "
            f"configuration that {OPERATIVE_CONFIG} in its folder records."
        ) from error


def restore(model_dir, checkpoint=None):
    """The trained model of a run: rebuilt from model_dir/model.json and restored from
    its latest checkpoint (or `checkpoint`), every variable checked.

    Works in a fresh process without any gin configuration. Raises FileNotFoundError
    when there is no run or no checkpoint, CheckpointMismatchError when the checkpoint
    does not hold the whole model.
    """
    from genesis_tf.models.base import from_description

    description = read_description(model_dir)
    if description is None:
        raise FileNotFoundError(
            f"{os.path.join(model_dir, MODEL_FILE)} not found: {model_dir} is not a "
            "genesis_tf run directory (python -m genesis_tf.train --model_dir=... makes one)")
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if not path:
        raise FileNotFoundError(f"no checkpoint in {model_dir}; the run saved none yet")
    model = from_description(description, _models()).build_for_images()
    check_holds_model(path, model, model_dir)
    problem = None
    logger = tf.get_logger()
    level = logger.level
    try:
        # A failed restore leaves a half-restored Checkpoint whose deletion logs a page of
        # "unrestored values" warnings; the one-line error below says it all.
        logger.setLevel("ERROR")
        try:
            status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            problem = str(error).splitlines()[0][:300]
        gc.collect()  # deletes the failed Checkpoint while its warnings are muted
    finally:
        logger.setLevel(level)
    if problem is not None:
        raise CheckpointMismatchError(
            f"the checkpoint {path} holds another model than {model_dir}/{MODEL_FILE} "
            f"describes ({problem}); pass a checkpoint of this run")
    return model


def restore_with_state(model_dir, checkpoint=None):
    """(model, checkpoint path, training_state of it): restore() for the tools that also
    report the training step (evaluate, visualise, warm_start)."""
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    model = restore(model_dir, checkpoint=path)  # raises first when there is no checkpoint
    return model, path, training_state(path)


def training_state(path):
    """{'step': int, 'geco_beta': float, 'geco_err_ema': float} stored in a training
    checkpoint (a key the checkpoint lacks is left out)."""
    reader = tf.train.load_checkpoint(path)
    keys = reader.get_variable_to_shape_map()
    facts = {}
    for name, key, convert in (("step", "step/.ATTRIBUTES/VARIABLE_VALUE", int),
                               ("geco_beta", "geco/beta/.ATTRIBUTES/VARIABLE_VALUE", float),
                               ("geco_err_ema", "geco/err_ema/.ATTRIBUTES/VARIABLE_VALUE",
                                float)):
        if key in keys:
            facts[name] = convert(reader.get_tensor(key))
    return facts
