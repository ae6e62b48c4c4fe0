"""SavedModels for TF Serving: decompose, generate and features as signatures.

    from genesis_tf.export import export_model
    export_model(model, "exports/gqn/5000")          # any model of the contract

    python -m genesis_tf.export --model_dir=runs/gqn --export_dir=exports/gqn

The SavedModel needs only TensorFlow to load (no genesis_tf, gin or TFP import):

``serving_default`` = ``decompose``
    ``images`` uint8 [N, S, S, 3] (0-255) -> ``reconstruction`` float32 [N, S, S, 3],
    ``masks`` [N, K, S, S], ``components`` [N, K, S, S, 3], ``segmentation`` int32
    [N, S, S] (the slot with the largest mask), and the latents the model has, ``z_mask``
    [N, K, Dm] and ``z_comp`` [N, K, Dc]: posterior means, moving batch-norm
    statistics, so the same image always gives the same answer. GENESIS-V2 adds
    ``ic_sbp_masks`` [N, K, S, S], its IC-SBP masks (``masks`` are its decoded masks,
    which give the reconstruction; the IC-SBP's draw is the model's fixed
    deterministic one).
``decompose_float``
    the same for float32 ``images`` in [0, 1]; NaN, infinite and out-of-range pixels
    are refused (0-255 floats belong to ``decompose`` as uint8, or divided by 255).
``generate``
    ``num_images`` int32 scalar, ``seed`` int64 scalar -> ``images`` [N, S, S, 3],
    ``masks``, ``components``: scenes drawn slot by slot from the priors; one seed always
    gives the same scenes (the seed is used modulo 2^32).
``features``
    ``images`` uint8 -> ``features`` float32 [N, D]: the representation downstream probes
    use (every slot's posterior means, concatenated).

TF Serving does not check input shapes against a signature, so every signature checks
its input in the graph and refuses a wrong one with an InvalidArgumentError that states
the expected shape and dtype; the image signatures also refuse a batch of more than
``max_decompose_images`` (set at export, default 256), as ``generate`` refuses more than
``max_generate_images``. The model's description (class, configuration, training
step, GECO β) is the asset ``assets/genesis_tf_model.json``; TF Serving's warm-up
requests, one per signature, are in ``assets.extra/tf_serving_warmup_requests``.
"""
import datetime
import json
import os
import shutil
import tempfile

import tensorflow as tf

from genesis_tf.errors import UserError
from genesis_tf.export.warmup import WARMUP_FILE, write_warmup_file

INFO_FILE = "genesis_tf_model.json"
DEFAULT_MAX_GENERATE_IMAGES = 256
DEFAULT_MAX_DECOMPOSE_IMAGES = 256


class ExportError(UserError, RuntimeError):
    """The export cannot be written (target exists, model cannot be traced, ...)."""


def _image_check(images, size, dtype_name, max_images):
    """Asserts images are [1 <= N <= max_images, size, size, 3] at run time.

    No op here can fail on a tensor of another rank (the shape is padded before it is
    indexed): graph optimisation may assume the declared rank and drop a separate rank
    check, while a wrong tensor still arrives.
    """
    expected = f"expected images of shape [N >= 1, {size}, {size}, 3] and dtype {dtype_name}"
    shape = tf.shape(images)
    padded = tf.concat([shape, [-1, -1, -1, -1]], axis=0)[:4]
    shape_ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                              tf.reduce_all(tf.equal(padded[1:], [size, size, 3])))
    checks = [
        tf.debugging.Assert(shape_ok, [f"{expected}, got shape", shape],
                            name="check_image_shape"),
        tf.debugging.Assert(padded[0] > 0, [f"{expected}, got an empty batch, shape", shape],
                            name="check_nonempty_batch"),
    ]
    # One request's memory grows with its batch (512 images at 64x64, K=5 took 9.9 GB).
    # Checked after the shape, so a wrong shape is reported as such.
    with tf.control_dependencies(checks):
        batch_check = tf.debugging.Assert(
            padded[0] <= max_images,
            [tf.strings.format(
                "a request holds at most {} images (--max_decompose_images at export), got "
                "{}: split the batch or export with a larger --max_decompose_images",
                [max_images, padded[0]])],
            name="check_batch_size")
    with tf.control_dependencies([batch_check]):
        return tf.identity(images)


def _pixel_check(images):
    """Asserts float images are finite and in [0, 1] (a NaN image would otherwise give
    an all-zero segmentation that looks valid, and 0-255 floats a nonsense one)."""
    finite = tf.math.is_finite(images)
    finite_check = tf.debugging.Assert(
        tf.reduce_all(finite),
        [tf.strings.format(
            "images must be finite floats in [0, 1], got {} NaN or infinite values: "
            "replace them (e.g. numpy.nan_to_num) before sending",
            [tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.int64))])],
        name="check_finite_pixels")
    # Min and max are only meaningful once every value is finite.
    with tf.control_dependencies([finite_check]):
        low, high = tf.reduce_min(images), tf.reduce_max(images)
        range_check = tf.debugging.Assert(
            tf.logical_and(low >= 0.0, high <= 1.0),
            [tf.strings.format(
                "images must be floats in [0, 1], got min {} and max {}: divide 8-bit "
                "images by 255 or use the decompose signature", [low, high])],
            name="check_pixel_range")
    with tf.control_dependencies([range_check]):
        return tf.identity(images)


def _checked(function, size, dtype_name, max_images, floats=False):
    """function(images [N, S, S, 3] float32) behind the input checks.

    TF Serving feeds whatever arrives into a signature's placeholder, so the checks run
    in an inner function that takes any shape: with the signature's static shape
    [None, S, S, 3] they would be folded away as always true.
    """
    def run(images):
        images = _image_check(images, size, dtype_name, max_images)
        if floats:
            images = _pixel_check(images)
        return function(tf.ensure_shape(images, [None, size, size, 3]))

    return tf.function(run, input_signature=[tf.TensorSpec(None, tf.float32)],
                       autograph=False)


def _decompose_function(model, slots):
    """images [N, S, S, 3] float32 in [0, 1] -> decompose's outputs."""
    def decompose_images(images):
        out = model(images, training=False, num_slots=slots, deterministic=True)
        masks = tf.exp(out.log_masks[..., 0])  # [N, K, S, S]
        result = {
            "reconstruction": out.recon,
            "masks": masks,
            "components": out.components,
            "segmentation": tf.argmax(masks, axis=1, output_type=tf.int32),
        }
        # GENESIS-V2's second mask set: `masks` are its decoded masks (they give the
        # reconstruction), these the IC-SBP's, which its segmentation metrics score.
        if out.ic_sbp_log_masks is not None:
            result["ic_sbp_masks"] = tf.exp(out.ic_sbp_log_masks[..., 0])  # [N, K, S, S]
        # Latents a model has (the VAE baselines have no mask latent, GENESIS-S no
        # component latent).
        for name in ("z_mask", "z_comp"):
            if getattr(out, name) is not None:
                result[name] = getattr(out, name)
        return result

    return decompose_images


def _generate_function(model, slots, limit):
    """The generate signature: (num_images, seed) -> sampled scenes."""
    @tf.function(input_signature=[
        tf.TensorSpec([], tf.int32, name="num_images"),
        tf.TensorSpec([], tf.int64, name="seed"),
    ])
    def generate(num_images, seed):
        check = tf.debugging.Assert(
            tf.logical_and(num_images >= 1, num_images <= limit),
            [f"num_images must be an int32 scalar in [1, {limit}] (export with "
             "--max_generate_images to allow more), got", num_images])
        with tf.control_dependencies([check]):
            # A stateless seed is 32-bit: the int64 seed is used modulo 2^32.
            seed32 = tf.bitcast(tf.cast(seed % (2 ** 32), tf.uint32), tf.int32)
            out = model.sample(batch_size=num_images, seed=seed32, num_slots=slots)
        return {
            "images": tf.identity(out.recon, name="images"),
            "masks": tf.identity(tf.exp(out.log_masks[..., 0]), name="masks"),
            "components": tf.identity(out.components, name="components"),
        }

    return generate


class ServingModule(tf.Module):
    """What the SavedModel holds: the model's variables and the signature functions.

    The Keras model is not an attribute: Keras 3 saves its variables as generic
    trackables, which TF Serving's loader cannot restore ("Could not find variable"), so
    the raw tf.Variables are tracked instead and the functions close over the model.
    """

    def __init__(self, model, num_slots=None, max_generate_images=DEFAULT_MAX_GENERATE_IMAGES,
                 max_decompose_images=DEFAULT_MAX_DECOMPOSE_IMAGES):
        super().__init__(name="genesis_tf_serving")
        size = model.image_size
        slots = num_slots or model.num_slots
        self.image_size, self.num_slots = size, slots
        self.max_generate_images = int(max_generate_images)
        self.max_decompose_images = int(max_decompose_images)
        self.tf_variables = [getattr(v, "value", v) for v in model.variables]

        cap = self.max_decompose_images
        decompose_images = _decompose_function(model, slots)
        decompose_uint8 = _checked(decompose_images, size, "uint8 (0-255)", cap)
        decompose_unit = _checked(decompose_images, size, "float32 (in [0, 1])", cap,
                                  floats=True)
        features_uint8 = _checked(
            lambda images: {"features": model.features(images, num_slots=slots)},
            size, "uint8 (0-255)", cap)
        uint8_spec = tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")
        float_spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")

        def to_float(images):
            return tf.cast(images, tf.float32) / 255.0

        @tf.function(input_signature=[uint8_spec])
        def decompose(images):
            return decompose_uint8(to_float(images))

        @tf.function(input_signature=[float_spec])
        def decompose_float(images):
            return decompose_unit(images)

        @tf.function(input_signature=[uint8_spec])
        def features(images):
            return features_uint8(to_float(images))

        self.decompose = decompose
        self.decompose_float = decompose_float
        self.features = features
        self.generate = _generate_function(model, slots, self.max_generate_images)

    def signatures(self):
        concrete = {
            "decompose": self.decompose.get_concrete_function(),
            "decompose_float": self.decompose_float.get_concrete_function(),
            "generate": self.generate.get_concrete_function(),
            "features": self.features.get_concrete_function(),
        }
        return {"serving_default": concrete["decompose"], **concrete}

    def warmup_requests(self):
        """One request per signature, for TF Serving's warm-up file."""
        import numpy as np

        image = np.zeros([1, self.image_size, self.image_size, 3], np.uint8)
        return [
            ("serving_default", {"images": image}),
            ("decompose", {"images": image}),
            ("decompose_float", {"images": image.astype(np.float32)}),
            ("generate", {"num_images": np.int32(1), "seed": np.int64(0)}),
            ("features", {"images": image}),
        ]


def describe_signatures(signatures):
    """{name: {"inputs": {name: [dtype, shape]}, "outputs": {...}}} of concrete functions."""
    def spec(s):
        return [s.dtype.name, [d if d is not None else -1 for d in s.shape.as_list()]]

    described = {}
    for name, function in signatures.items():
        args, kwargs = function.structured_input_signature
        inputs = {s.name: spec(s) for s in [*args, *kwargs.values()]}
        outputs = {k: spec(v) for k, v in function.structured_outputs.items()}
        described[name] = {"inputs": inputs, "outputs": outputs}
    return described


def export_model(model, path, num_slots=None, info=None, overwrite=False,
                 max_generate_images=DEFAULT_MAX_GENERATE_IMAGES,
                 max_decompose_images=DEFAULT_MAX_DECOMPOSE_IMAGES):
    """Writes a SavedModel of `model` to `path` (e.g. exports/gqn/5000); returns its
    description (also stored as the asset genesis_tf_model.json).

    num_slots: K of the exported signatures (default: the model's).
    info: extra facts for the description (training step, GECO β, checkpoint).
    max_generate_images, max_decompose_images: the largest batch generate and the
    image signatures answer in one request.
    The export is written beside `path` and renamed into place when complete, so a
    server watching the folder never sees half an export.
    """
    from genesis_tf import __version__
    from genesis_tf.models import config_of

    path = os.path.abspath(path)
    if tf.io.gfile.exists(path):
        if not overwrite:
            raise ExportError(f"{path} exists; choose another --version or pass --overwrite")
    module = ServingModule(model, num_slots=num_slots,
                           max_generate_images=max_generate_images,
                           max_decompose_images=max_decompose_images)
    signatures = module.signatures()
    description = {
        **config_of(model),
        "num_slots": module.num_slots,
        "image_size": module.image_size,
        "max_generate_images": module.max_generate_images,
        "max_decompose_images": module.max_decompose_images,
        **(info or {}),
        "signatures": describe_signatures(signatures),
        "genesis_tf_version": __version__,
        "tensorflow_version": tf.__version__,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    parent = os.path.dirname(path)
    tf.io.gfile.makedirs(parent)
    # Not an integer name, so TF Serving ignores the folder while it fills.
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.partial-", dir=parent)
    info_dir = tempfile.mkdtemp()
    try:
        info_path = os.path.join(info_dir, INFO_FILE)
        with open(info_path, "w") as f:
            json.dump(description, f, indent=2, sort_keys=True)
            f.write("\n")
        module.model_info = tf.saved_model.Asset(info_path)
        saved = os.path.join(staging, "export")
        tf.saved_model.save(module, saved, signatures=signatures)
        write_warmup_file(saved, module.warmup_requests())
        if tf.io.gfile.exists(path):
            shutil.rmtree(path)
        os.replace(saved, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(info_dir, ignore_errors=True)
    return description


def read_export_info(path):
    """The description an export stores in assets/genesis_tf_model.json."""
    with open(os.path.join(path, "assets", INFO_FILE)) as f:
        return json.load(f)


__all__ = ["ExportError", "ServingModule", "WARMUP_FILE", "describe_signatures", "export_model",
           "read_export_info"]
