"""What a run directory holds, and reloading a trained model from it in any process.

    model_dir/
      model.json              the model's class and constructor arguments (get_config)
      run.json                what the run trains on: dataset, data_dir, image_size
      operative_config.gin    the full gin configuration of the latest start
      config_history/         earlier operative configs, one per resumed start that
                              changed a setting (<step>.gin), and changes.txt
      ckpt-<step>.{index,data-*}, checkpoint    tf.train.Checkpoint: model (every
                              variable, batch-norm statistics included), optimizer,
                              GECO, step
      train/, val/            TensorBoard summaries

    from genesis_tf import runs
    model = runs.restore("runs/gqn")        # the latest checkpoint, in a fresh process
    model = runs.restore("runs/gqn", checkpoint="runs/gqn/ckpt-5000")
    runs.read_run_info("runs/gqn")          # {'dataset': 'gqn_rooms_ring_camera', ...}

Nothing here imports the training loop or gin: the tools (evaluate, visualise, export,
the demo, the converter) reload a model through this module alone.
"""
import ast
import gc
import json
import os

import tensorflow as tf

from genesis_tf import run_safety
from genesis_tf.errors import UserError
from genesis_tf.models import MODELS
from genesis_tf.models.base import from_description

MODEL_FILE = "model.json"
RUN_FILE = "run.json"
OPERATIVE_CONFIG = "operative_config.gin"
RUN_KEYS = ("dataset", "data_dir", "image_size")


class CheckpointMismatchError(UserError, RuntimeError):
    """model_dir holds a checkpoint of a different model or configuration."""


class DamagedRunFileError(CheckpointMismatchError):
    """model.json cannot be read; training writes it again, the tools cannot go on."""


class ModelFileChangedError(CheckpointMismatchError):
    """model.json no longer describes the model that training built."""


class NotARunError(UserError, FileNotFoundError):
    """The folder is not a run directory, or the run has no (readable) checkpoint there."""


def read_description(model_dir):
    """The run's model.json as a dict, None when there is none; a damaged one is a
    one-line DamagedRunFileError (it is all that rebuilds the model)."""
    path = os.path.join(model_dir, MODEL_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        description = json.loads(text)
    except ValueError as error:
        description, problem = None, f"not JSON: {error}"
    else:
        problem = None if isinstance(description, dict) and "class_name" in description \
            else "no class_name"
    if problem:
        raise DamagedRunFileError(
            f"{path} is damaged ({problem}); restore it from a copy, or rerun "
            "python -m genesis_tf.train with the run's gin files and this --model_dir, "
            "which writes it again")
    return description


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


def _write_json(path, value):
    """Writes JSON under a temporary name, then renames it: never a half-written file."""
    run_safety.write_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_run_info(model_dir, dataset, data_dir, image_size, model=None):
    """Records what the run trains on (run.json), for the tools that reload it, and the
    model description training built (`model`), which model.json must keep matching."""
    _write_json(os.path.join(model_dir, RUN_FILE),
                {"dataset": dataset, "data_dir": data_dir, "image_size": image_size,
                 "model": model})


def trained_description(model_dir):
    """The model description training recorded in run.json, or None (older runs)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f).get("model")
    except (ValueError, AttributeError):
        return None


def checked_description(model_dir):
    """model.json, refused in one line when it no longer describes the model training
    built (an edited num_slots would make every tool silently run another model)."""
    description = read_description(model_dir)
    trained = trained_description(model_dir)
    changes = [] if description is None or trained is None else [
        f"{key} {new!r} (trained: {old!r})"
        for key, old, new in description_changes(trained, description)]
    if changes:
        raise ModelFileChangedError(
            f"{os.path.join(model_dir, MODEL_FILE)} was changed after training wrote it: "
            f"{'; '.join(changes)}. Put the trained values back (run.json records them); "
            "to decompose into another number of slots pass --num_slots to evaluate, "
            "visualise or export instead")
    return description


def read_run_info(model_dir):
    """{'dataset', 'data_dir', 'image_size'} of a run (None where unknown).

    Runs written before run.json existed record these only as gin bindings of `train` in
    operative_config.gin; they are read from there.
    """
    path = os.path.join(model_dir, RUN_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
        return {key: info.get(key) for key in RUN_KEYS}
    return {key: _recorded_binding(model_dir, f"train.{key}") for key in RUN_KEYS}


def _recorded_binding(model_dir, name):
    """A literal binding of an older run's operative_config.gin, else None."""
    path = os.path.join(model_dir, OPERATIVE_CONFIG)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        text = f.read().replace("\\\n", " ")  # gin continues long values with a backslash
    for line in text.splitlines():
        if line.startswith(name + " = "):
            try:
                return ast.literal_eval(line.split(" = ", 1)[1].strip())
            except (ValueError, SyntaxError):
                return None  # a reference such as @Genesis or %IMAGE_SIZE
    return None


def weight_count(model):
    """The model's variables that a checkpoint must hold (the random-number generators'
    states of Keras layers are not weights)."""
    return sum(1 for v in model.variables if "seed_generator" not in v.path)


def load_checkpoint(path):
    """tf.train.load_checkpoint(path), with a path that holds no readable checkpoint as
    NotARunError (TensorFlow raises NotFoundError, DataLossError or ValueError)."""
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise NotARunError(
            f"cannot read checkpoint {path}: {first}; pass --checkpoint=<model_dir>/"
            "ckpt-<step> (the prefix, without .index)") from error


def saved_model_variables(path, child="model"):
    """How many variables the checkpoint at `path` holds below its root's `child`.

    Counted in the checkpoint's object graph, not by key name: TensorFlow names each value
    by its shortest path, so trainable weights appear under optimizer/ when an optimizer
    is saved beside the model.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = load_checkpoint(path)
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


def restore(model_dir, checkpoint=None):
    """The trained model of a run: rebuilt from model_dir/model.json and restored from
    its newest checkpoint that reads back whole (or `checkpoint`), every variable checked.

    Works in a fresh process without any gin configuration. Damaged newer checkpoints
    are skipped with one warning line on stderr naming each and why. Raises NotARunError
    (a FileNotFoundError) when there is no run or no checkpoint, DamagedCheckpointError
    when `checkpoint` (or every checkpoint) is damaged, CheckpointMismatchError when the
    checkpoint does not hold the whole model.
    """
    return _restore_from(model_dir, _checkpoint_to_restore(model_dir, checkpoint))


def _checkpoint_to_restore(model_dir, checkpoint):
    """The checked checkpoint path of a run (see restore)."""
    if checked_description(model_dir) is None:
        raise NotARunError(
            f"{os.path.join(model_dir, MODEL_FILE)} not found: {model_dir} is not a "
            "genesis_tf run directory (python -m genesis_tf.train --model_dir=... makes one)")
    path = run_safety.resolve_checkpoint(model_dir, checkpoint)
    if not path:
        raise NotARunError(f"no checkpoint in {model_dir}; the run saved none yet")
    return path


def _restore_from(model_dir, path):
    model = from_description(read_description(model_dir), MODELS).build_for_images()
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
    path = _checkpoint_to_restore(model_dir, checkpoint)
    return _restore_from(model_dir, path), path, training_state(path)


def training_state(path):
    """{'step': int, 'geco_beta': float, 'geco_err_ema': float} stored in a training
    checkpoint (a key the checkpoint lacks is left out)."""
    reader = load_checkpoint(path)
    keys = reader.get_variable_to_shape_map()
    facts = {}
    for name, key, convert in (("step", "step/.ATTRIBUTES/VARIABLE_VALUE", int),
                               ("geco_beta", "geco/beta/.ATTRIBUTES/VARIABLE_VALUE", float),
                               ("geco_err_ema", "geco/err_ema/.ATTRIBUTES/VARIABLE_VALUE",
                                float)):
        if key in keys:
            facts[name] = convert(reader.get_tensor(key))
    return facts
