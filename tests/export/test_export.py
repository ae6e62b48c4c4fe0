"""SavedModel export for TF Serving, tried where its users meet it: the export binary on
a trained run, saved_model_cli (the TF1 session loader TF Serving's C++ server uses), a
fresh process that never imports genesis_tf, and TF Serving's own protocol buffers."""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.training import BackgroundProcess, parse, run_binary, selected_tests

ROOT = pathlib.Path(__file__).resolve().parents[2]

SIZE, SLOTS, STEPS = 32, 3, 3
# The export's --max_decompose_images: tiny, so refusing CAP + 1 images costs little; the
# two-image batches below are exactly at the cap.
CAP = 2
SIGNATURES = ("serving_default", "decompose", "decompose_float", "generate", "features")

# Runs in a fresh process with only TensorFlow: loads the export, runs every signature,
# and feeds it wrong inputs. Writes outputs.npz and errors.json.
_FRESH_PROCESS_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

export, images_file, out_dir = sys.argv[1:4]
loaded = tf.saved_model.load(export)
images = np.load(images_file)
sig = loaded.signatures
out = {}
for key, value in sig["decompose"](images=tf.constant(images)).items():
    out["decompose/" + key] = value.numpy()
for key, value in sig["decompose_float"](images=tf.constant(images / 255.0, tf.float32)).items():
    out["decompose_float/" + key] = value.numpy()
out["features"] = sig["features"](images=tf.constant(images))["features"].numpy()
for name, seed in (("seed7", 7), ("seed7_again", 7), ("seed8", 8)):
    result = sig["generate"](num_images=tf.constant(2), seed=tf.constant(seed, tf.int64))
    for key, value in result.items():
        out[f"generate_{name}/" + key] = value.numpy()
np.savez(out_dir + "/outputs.npz", **out)

size = images.shape[1]
wrong = {
    "rank": np.zeros([size, size, 3], np.uint8),
    "size": np.zeros([1, size // 2, size // 2, 3], np.uint8),
    "channels": np.zeros([1, size, size, 4], np.uint8),
    "dtype": np.zeros([1, size, size, 3], np.float32),
    "empty": np.zeros([0, size, size, 3], np.uint8),
}
errors = {}
for case, value in wrong.items():
    try:
        sig["decompose"](images=tf.constant(value))
        errors[case] = None
    except Exception as error:
        errors[case] = type(error).__name__ + ": " + str(error)
# decompose_float refuses what it cannot answer: NaN, infinite and 0-255 pixels.
unit = images / np.float32(255.0)
nan, inf = unit.copy(), unit.copy()
nan[0, 1, 2, 0] = np.nan
inf[1, 3, 4, 2] = np.inf
for case, value in (("float_nan", nan), ("float_inf", inf), ("float_255", images * 1.0)):
    try:
        sig["decompose_float"](images=tf.constant(value, tf.float32))
        errors[case] = None
    except Exception as error:
        errors[case] = type(error).__name__ + ": " + str(error)
# Every image signature refuses one image more than the export's cap.
more = np.concatenate([images, images[:1]])
for name, value in (("decompose", more), ("decompose_float", more / np.float32(255.0)),
                    ("features", more)):
    try:
        dtype = tf.float32 if name == "decompose_float" else tf.uint8
        sig[name](images=tf.constant(value, dtype))
        errors["cap_" + name] = None
    except Exception as error:
        errors["cap_" + name] = type(error).__name__ + ": " + str(error)
for case, count in (("zero_images", 0), ("too_many_images", 10 ** 6)):
    try:
        sig["generate"](num_images=tf.constant(count), seed=tf.constant(1, tf.int64))
        errors[case] = None
    except Exception as error:
        errors[case] = type(error).__name__ + ": " + str(error)

# TF Serving's server feeds tensors into the signature's graph without checking them
# against the declared shape (Session::Run from C++); the session's raw run call does the
# same, below the Python-side checks of session.run.
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    signature = meta.signature_def["decompose"]
    feed = session.graph.get_tensor_by_name(signature.inputs["images"].name)
    fetch = session.graph.get_tensor_by_name(signature.outputs["masks"].name)

    def run(value):
        return session._call_tf_sessionrun(None, {feed._as_tf_output(): value},
                                           [fetch._as_tf_output()], [], None)[0]

    errors["session_ok_shape"] = list(run(images).shape)
    # An int32 tensor as a gRPC request carries it: refused by the session, not cast.
    wrong["int32"] = images.astype(np.int32)
    for case in ("rank", "size", "channels", "empty", "int32"):
        try:
            run(wrong[case])
            errors["session_" + case] = None
        except Exception as error:
            errors["session_" + case] = type(error).__name__ + ": " + str(error)

modules = sorted(m.split(".")[0] for m in sys.modules)
errors["modules"] = [m for m in ("genesis_tf", "gin", "tensorflow_probability") if m in modules]
with open(out_dir + "/errors.json", "w") as f:
    json.dump(errors, f)
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny GENESIS run (32x32, K=3) trained for 3 steps in this process."""
    import gin

    from genesis_tf.training import train

    gin.clear_config()
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    parse(bindings=["train.seed = 1", f"train.checkpoint_every = {STEPS}"])
    result = train(str(run_dir), num_steps=STEPS)
    gin.clear_config()
    return run_dir, result.model


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """The export binary run on the trained run: (export folder, the binary's output)."""
    run_dir, _ = trained_run
    export_dir = tmp_path_factory.mktemp("exports") / "genesis"
    result = run_binary("genesis_tf.export",
                        [f"--model_dir={run_dir}", f"--export_dir={export_dir}",
                         f"--max_decompose_images={CAP}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return export_dir / str(STEPS), result


@pytest.fixture(scope="module")
def images():
    return tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[4, 2], maxval=256,
                                       dtype=tf.int32).numpy().astype(np.uint8)


def test_binary_writes_a_versioned_export_and_describes_it(trained_run, exported):
    path, result = exported
    assert sorted(os.listdir(path.parent)) == [str(STEPS)]  # no staging folder left
    assert (path / "saved_model.pb").exists()
    from genesis_tf.export import read_export_info

    info = read_export_info(str(path))
    assert info["class_name"] == "Genesis"
    assert info["training_step"] == STEPS and info["num_slots"] == SLOTS
    assert info["config"]["image_size"] == SIZE
    assert info["max_decompose_images"] == CAP and info["max_generate_images"] == 256
    beta = tf.train.load_checkpoint(info["checkpoint"]).get_tensor(
        "geco/beta/.ATTRIBUTES/VARIABLE_VALUE")
    assert info["geco_beta"] == pytest.approx(float(beta))
    assert set(info["signatures"]) == set(SIGNATURES)
    # The command prints the model and every signature with its shapes.
    assert f"Exported Genesis: K={SLOTS}, {SIZE}x{SIZE} images, training step {STEPS}" in \
        result.stdout
    assert f"decompose(images uint8[-1, {SIZE}, {SIZE}, 3])" in result.stdout
    assert "generate(num_images int32[], seed int64[])" in result.stdout


def test_saved_model_cli_shows_and_runs_the_signatures(exported, images, tmp_path):
    path, _ = exported
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    show = subprocess.run(cli + ["show", "--dir", str(path), "--all"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert show.returncode == 0, show.stderr[-2000:]
    text = show.stdout
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in text, name
    decompose = text.split("signature_def['decompose']")[1].split("signature_def[")[0]
    assert "dtype: DT_UINT8" in decompose and f"shape: (-1, {SIZE}, {SIZE}, 3)" in decompose
    assert f"shape: (-1, {SLOTS}, {SIZE}, {SIZE})" in decompose  # masks
    assert "dtype: DT_INT32" in decompose  # segmentation
    generate = text.split("signature_def['generate']")[1].split("signature_def[")[0]
    assert "dtype: DT_INT64" in generate and "shape: ()" in generate

    np.save(tmp_path / "images.npy", images)
    decomposed = subprocess.run(
        cli + ["run", "--dir", str(path), "--tag_set", "serve", "--signature_def",
               "decompose", "--inputs", f"images={tmp_path / 'images.npy'}",
               "--outdir", str(tmp_path / "decompose")],
        capture_output=True, text=True, timeout=300, env=env)
    assert decomposed.returncode == 0, decomposed.stderr[-2000:]
    masks = np.load(tmp_path / "decompose" / "masks.npy")
    assert masks.shape == (2, SLOTS, SIZE, SIZE)
    np.testing.assert_allclose(masks.sum(axis=1), 1.0, atol=1e-5)

    generated = subprocess.run(
        cli + ["run", "--dir", str(path), "--tag_set", "serve", "--signature_def",
               "generate", "--input_exprs", "num_images=2;seed=7",
               "--outdir", str(tmp_path / "generate")],
        capture_output=True, text=True, timeout=300, env=env)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert np.load(tmp_path / "generate" / "images.npy").shape == (2, SIZE, SIZE, 3)


def test_saved_model_cli_with_an_int32_file(trained_run, exported, images, tmp_path):
    """saved_model_cli run (like any TF1 Session.run) casts a .npy file to the signature's
    dtype with numpy before the graph runs: an int32 file of 0-255 pixels reaches
    decompose_float as 0-255 floats, which its graph refuses; on the uint8 signatures the
    graph receives uint8 and cannot tell (values in 0..255 survive the cast unchanged)."""
    path, _ = exported
    _, model = trained_run
    # The console script pip installs beside the interpreter, as users run it.
    cli = [str(pathlib.Path(sys.executable).parent / "saved_model_cli")]
    np.save(tmp_path / "int32.npy", images.astype(np.int32))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    processes = {
        name: subprocess.Popen(
            cli + ["run", "--dir", str(path), "--tag_set", "serve", "--signature_def", name,
                   "--inputs", f"images={tmp_path / 'int32.npy'}",
                   "--outdir", str(tmp_path / name)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("decompose_float", "decompose")
    }
    results = {name: (p.communicate(timeout=300), p.returncode)
               for name, p in processes.items()}

    (_, stderr), returncode = results["decompose_float"]
    assert returncode != 0 and not (tmp_path / "decompose_float").exists()
    message = (f"assertion failed: [images must be floats in [0, 1], got min {images.min()} "
               f"and max {images.max()}: divide 8-bit images by 255 or use the decompose "
               "signature]")
    assert message in stderr.splitlines(), stderr[-2000:]

    (_, stderr), returncode = results["decompose"]
    assert returncode == 0, stderr[-2000:]
    out = model(images, training=False, deterministic=True)
    np.testing.assert_allclose(np.load(tmp_path / "decompose" / "masks.npy"),
                               np.exp(out.log_masks.numpy()[..., 0]), atol=1e-5)


def test_fresh_process_without_genesis_tf_reproduces_the_model(trained_run, exported, images,
                                                                tmp_path):
    path, _ = exported
    _, model = trained_run
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_SCRIPT, str(path), str(tmp_path / "images.npy"),
         str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(tmp_path / "outputs.npz")
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert errors["modules"] == []  # loading needed TensorFlow only

    out = model(images, training=False, deterministic=True)
    masks = np.exp(out.log_masks.numpy()[..., 0])
    expected = {"reconstruction": out.recon.numpy(), "masks": masks,
                "components": out.components.numpy(), "z_mask": out.z_mask.numpy(),
                "z_comp": out.z_comp.numpy()}
    for signature in ("decompose", "decompose_float"):
        for key, value in expected.items():
            np.testing.assert_allclose(got[f"{signature}/{key}"], value, atol=1e-5,
                                       err_msg=f"{signature}/{key}")
        np.testing.assert_array_equal(got[f"{signature}/segmentation"], masks.argmax(axis=1))
    np.testing.assert_allclose(got["features"], model.features(images).numpy(), atol=1e-5)

    sample = model.sample(batch_size=2, seed=7)
    np.testing.assert_allclose(got["generate_seed7/images"], sample.recon.numpy(), atol=1e-5)
    for key in ("images", "masks", "components"):
        np.testing.assert_array_equal(got[f"generate_seed7/{key}"],
                                      got[f"generate_seed7_again/{key}"])
    assert np.abs(got["generate_seed7/images"] - got["generate_seed8/images"]).max() > 1e-3

    # Wrong inputs are refused with the expected shape and dtype, in the TF2 loader and in
    # the session that TF Serving runs (which does not check the declared shape itself).
    expected_message = f"expected images of shape [N >= 1, {SIZE}, {SIZE}, 3] and dtype uint8"
    for case in ("rank", "size", "channels", "empty", "session_rank", "session_size",
                 "session_channels", "session_empty"):
        assert errors[case] is not None, f"{case} was accepted"
        assert expected_message in errors[case], (case, errors[case])
    assert "expected to be a uint8 tensor but is a float tensor" in errors["dtype"]
    assert errors["session_ok_shape"] == [2, SLOTS, SIZE, SIZE]
    for case in ("zero_images", "too_many_images"):
        assert "num_images must be an int32 scalar in [1, 256]" in errors[case], errors[case]
    assert "Expects arg[0] to be uint8 but int32 is provided" in errors["session_int32"]

    # Pixels decompose_float cannot answer, and one image over the cap, are refused by
    # the graph (the batch of len(images) == CAP above was answered).
    assert len(images) == CAP
    refused = {
        "float_nan": "images must be finite floats in [0, 1], got 1 NaN or infinite values: "
                     "replace them (e.g. numpy.nan_to_num) before sending",
        "float_inf": "images must be finite floats in [0, 1], got 1 NaN or infinite values",
        "float_255": f"images must be floats in [0, 1], got min {images.min()} and max "
                     f"{images.max()}: divide 8-bit images by 255 or use the decompose "
                     "signature",
    }
    for name in ("decompose", "decompose_float", "features"):
        refused["cap_" + name] = (
            f"a request holds at most {CAP} images (--max_decompose_images at export), got "
            f"{CAP + 1}: split the batch or export with a larger --max_decompose_images")
    for case, message in refused.items():
        assert errors[case] is not None, f"{case} was accepted"
        assert "InvalidArgumentError" in errors[case] and message in errors[case], \
            (case, errors[case])


def test_warmup_requests_are_tensorflow_serving_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path, _ = exported
    records = tf.data.TFRecordDataset(
        str(path / "assets.extra" / "tf_serving_warmup_requests"))
    loaded = tf.saved_model.load(str(path))
    seen = []
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        name = request.model_spec.signature_name
        seen.append(name)
        inputs = {key: tf.constant(tf.make_ndarray(value))
                  for key, value in request.inputs.items()}
        # Every warm-up request is one its signature accepts.
        outputs = loaded.signatures[name](**inputs)
        assert outputs
    assert sorted(seen) == sorted(SIGNATURES)


def test_client_requests(images):
    from genesis_tf.export import client

    request = client.grpc_request(images, signature_name="decompose")
    assert request.model_spec.name == "genesis"
    assert request.model_spec.signature_name == "decompose"
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["images"]), images)
    assert request.inputs["images"].dtype == tf.uint8.as_datatype_enum
    request = client.grpc_request(signature_name="generate", num_images=4, seed=7)
    assert tf.make_ndarray(request.inputs["seed"]).dtype == np.int64

    body = json.loads(json.dumps(client.rest_request(images)))
    assert body["signature_name"] == "decompose"
    np.testing.assert_array_equal(np.array(body["instances"], np.uint8), images)
    body = client.rest_request(signature_name="generate", num_images=4, seed=7)
    assert body["inputs"] == {"num_images": 4, "seed": 7}
    with pytest.raises(ValueError, match="takes inputs \\['images'\\]"):
        client.rest_request(signature_name="decompose", pixels=images)


def test_client_converts_unit_floats_and_refuses_what_a_cast_would_garble(images):
    from genesis_tf.export import client

    # Floats in [0, 1] are sent as round(x * 255), not truncated to 0 by a cast.
    unit = images / 255.0
    body = client.rest_request(unit.astype(np.float32))
    np.testing.assert_array_equal(np.array(body["instances"]), images)
    request = client.grpc_request(unit, signature_name="features")
    assert request.inputs["images"].dtype == tf.uint8.as_datatype_enum
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["images"]), images)
    assert client.rest_request([[[[0.0, 0.5, 0.999]]]])["instances"] == [[[[0, 128, 255]]]]
    # Integers in 0..255 are kept; decompose_float gets its floats unchanged.
    body = client.rest_request(images.astype(np.int64))
    np.testing.assert_array_equal(np.array(body["instances"]), images)
    body = client.rest_request(unit, signature_name="decompose_float")
    np.testing.assert_allclose(np.array(body["instances"]), unit.astype(np.float32))

    uint8_takes = "signature 'decompose' takes uint8 images (0-255)"
    floats_too = f"{uint8_takes} or floats in [0, 1] (sent as round(x * 255))"
    refused = [
        ({"images": np.full([1, 2, 2, 3], 300)}, "decompose",
         f"{uint8_takes}; got integers from 300 to 300: scale or clip them to 0..255 first"),
        ({"images": images.astype(np.float32)}, "decompose",
         f"{floats_too}; got floats from {images.min()} to {images.max()}: convert 8-bit "
         "images with numpy.asarray(images, numpy.uint8) or divide them by 255"),
        ({"images": np.full([1, 2, 2, 3], np.nan)}, "decompose",
         f"{floats_too}; got 12 NaN or infinite values: replace them (e.g. "
         "numpy.nan_to_num) first"),
        ({"images": images}, "decompose_float",
         "signature 'decompose_float' takes float images in [0, 1]; got dtype uint8: divide "
         "8-bit images by 255 or use the decompose signature"),
        ({"images": np.full([1, 2, 2, 3], np.inf)}, "decompose_float",
         "signature 'decompose_float' takes floats in [0, 1]; got 12 NaN or infinite "
         "values: replace them (e.g. numpy.nan_to_num) first"),
        ({"num_images": 2.5, "seed": 7}, "generate", "num_images=2.5 does not fit int32"),
    ]
    for inputs, signature, message in refused:
        for build in (client.rest_request, client.grpc_request):
            with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
                build(signature_name=signature, **inputs)


def test_genesis_s_exports_with_more_slots_and_an_export_is_not_overwritten(tmp_path):
    from genesis_tf.export import ExportError, export_model
    from genesis_tf.models import GenesisS

    model = GenesisS(image_size=SIZE, num_slots=SLOTS).build_for_images()
    path = tmp_path / "genesis_s" / "1"
    info = export_model(model, str(path), num_slots=5)
    assert info["class_name"] == "GenesisS" and info["num_slots"] == 5
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["decompose"](images=tf.zeros([1, SIZE, SIZE, 3], tf.uint8))
    assert out["masks"].shape == (1, 5, SIZE, SIZE)
    assert "z_comp" not in out  # GENESIS-S has one latent per slot
    assert "ic_sbp_masks" not in out  # GENESIS-V2's alone
    features = loaded.signatures["features"](images=tf.zeros([1, SIZE, SIZE, 3], tf.uint8))
    assert features["features"].shape == (1, 5 * 64)
    with pytest.raises(ExportError, match="exists; choose another --version or pass"):
        export_model(model, str(path))


def test_binary_refuses_runs_without_a_checkpoint_or_of_another_model(trained_run, tmp_path):
    from genesis_tf import runs
    from genesis_tf.models import Genesis, config_of

    run_dir, _ = trained_run
    # A run folder whose training saved no checkpoint yet.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.json").write_text((run_dir / "model.json").read_text())
    # A checkpoint of another model (other mask latent size).
    other_dir = tmp_path / "other"
    other = Genesis(image_size=SIZE, num_slots=SLOTS, mask_latent_size=8).build_for_images()
    other_dir.mkdir()
    runs.write_description(str(other_dir), config_of(other))
    other_path = tf.train.Checkpoint(model=other).save(str(other_dir / "ckpt"))

    cases = {
        "no checkpoint in": [f"--model_dir={empty}"],
        "does not exist": [f"--model_dir={tmp_path / 'missing'}"],
        "holds": [f"--model_dir={run_dir}", f"--checkpoint={other_path}"],
        f"checkpoint {run_dir / 'ckpt-999'} cannot be found; the newest readable one is "
        f"ckpt-": [f"--model_dir={run_dir}", f"--checkpoint={run_dir / 'ckpt-999'}"],
    }
    # The runs are independent: launched together, they share the two cores.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    processes = {
        message: subprocess.Popen(
            [sys.executable, "-m", "genesis_tf.export", *args,
             f"--export_dir={tmp_path / 'out'}"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for message, args in cases.items()
    }
    for message, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (message, stderr[-2000:])
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            (message, stderr)
    assert not (tmp_path / "out").exists()


# GENESIS-V2: loads in a fresh process with TensorFlow only, runs every signature and
# replays the warm-up requests (with TF Serving's own protocol buffers).
_V2_FRESH_PROCESS_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

export, images_file, out_dir = sys.argv[1:4]
sig = tf.saved_model.load(export).signatures
images = np.load(images_file)
out = {}
for key, value in sig["decompose"](images=tf.constant(images)).items():
    out["decompose/" + key] = value.numpy()
unit = tf.constant(images / 255.0, tf.float32)
for key, value in sig["decompose_float"](images=unit).items():
    out["decompose_float/" + key] = value.numpy()
out["features"] = sig["features"](images=tf.constant(images))["features"].numpy()
generated = sig["generate"](num_images=tf.constant(2), seed=tf.constant(7, tf.int64))
for key, value in generated.items():
    out["generate/" + key] = value.numpy()
np.savez(out_dir + "/outputs.npz", **out)
warmed = []
for record in tf.data.TFRecordDataset(export + "/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = sig[request.model_spec.signature_name](**inputs)
    warmed.append([request.model_spec.signature_name, sorted(outputs)])
modules = sorted(m.split(".")[0] for m in sys.modules)
with open(out_dir + "/report.json", "w") as f:
    json.dump({"warmed": warmed, "modules": [m for m in ("genesis_tf", "gin",
               "tensorflow_probability") if m in modules]}, f)
"""


V2_TEST = "test_genesis_v2_export_returns_both_mask_sets_and_reloads_without_genesis_tf"


@pytest.fixture(scope="module", autouse=True)
def genesis_v2_export(request, images, tmp_path_factory):
    """A tiny GenesisV2 (K=3, latent 16) exported, and the TensorFlow-only process that
    loads it started at once: it runs on the other core during this module's other tests
    and the GENESIS-V2 test, the module's last, waits for it."""
    if not any(item.originalname == V2_TEST for item in selected_tests(request)):
        yield None
        return
    import keras

    from genesis_tf.export import export_model
    from genesis_tf.models import GenesisV2

    keras.utils.set_random_seed(5)
    model = GenesisV2(image_size=SIZE, num_slots=SLOTS, latent_size=16).build_for_images()
    model.colour_head.gate.assign(0.7)  # as after training: the embedding sees colour
    folder = tmp_path_factory.mktemp("genesis_v2")
    info = export_model(model, str(folder / "export" / "1"))
    np.save(folder / "images.npy", images)
    process = BackgroundProcess(
        [sys.executable, "-c", _V2_FRESH_PROCESS_SCRIPT, str(folder / "export" / "1"),
         str(folder / "images.npy"), str(folder)], timeout=600, cwd=folder,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    yield model, info, folder, process
    process.kill()


# Last: its process started with the module and ran during the tests above.
def test_genesis_v2_export_returns_both_mask_sets_and_reloads_without_genesis_tf(
        genesis_v2_export, images):
    """decompose gives GENESIS-V2's decoded masks as `masks` and its IC-SBP masks as
    `ic_sbp_masks`; a TensorFlow-only process reproduces model(images, deterministic=True)
    (whose unseeded IC-SBP draw is one fixed draw), generate and features, and accepts
    every warm-up request."""
    model, info, folder, process = genesis_v2_export
    decompose = info["signatures"]["decompose"]["outputs"]
    assert decompose["ic_sbp_masks"] == ["float32", [-1, SLOTS, SIZE, SIZE]]
    assert decompose["masks"] == ["float32", [-1, SLOTS, SIZE, SIZE]]
    assert "z_comp" not in decompose and info["class_name"] == "GenesisV2"

    result = process.result()
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(folder / "outputs.npz")
    report = json.loads((folder / "report.json").read_text())
    assert report["modules"] == []  # loading needed TensorFlow only
    assert sorted(name for name, _ in report["warmed"]) == sorted(SIGNATURES)

    out = model(images / 255.0, deterministic=True)
    masks = np.exp(out.log_masks.numpy()[..., 0])
    ic_sbp_masks = np.exp(out.ic_sbp_log_masks.numpy()[..., 0])
    # The two mask sets are different partitions of unity (so a mix-up would show).
    np.testing.assert_allclose(ic_sbp_masks.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(masks - ic_sbp_masks).max() > 0.1
    expected = {"reconstruction": out.recon.numpy(), "masks": masks,
                "ic_sbp_masks": ic_sbp_masks, "components": out.components.numpy(),
                "z_mask": out.z_mask.numpy()}
    for signature in ("decompose", "decompose_float"):
        assert sorted(k.split("/")[1] for k in got if k.startswith(signature + "/")) == \
            sorted([*expected, "segmentation"])
        for key, value in expected.items():
            np.testing.assert_allclose(got[f"{signature}/{key}"], value, atol=1e-5,
                                       err_msg=f"{signature}/{key}")
        np.testing.assert_array_equal(got[f"{signature}/segmentation"], masks.argmax(axis=1))
    np.testing.assert_allclose(got["features"], model.features(images / 255.0).numpy(),
                               atol=1e-5)
    sample = model.sample(batch_size=2, seed=7)
    np.testing.assert_allclose(got["generate/images"], sample.recon.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["generate/masks"],
                               np.exp(sample.log_masks.numpy()[..., 0]), atol=1e-5)
