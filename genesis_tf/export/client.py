"""Requests to a TF Serving server that serves a genesis_tf export.

REST (no extra package):

    body = rest_request(images, "decompose")         # images: uint8 [N, S, S, 3]
    requests.post("http://localhost:8501/v1/models/genesis:predict", json=body)
    body = rest_request(signature_name="generate", num_images=4, seed=7)

gRPC (the optional extra: pip install 'genesis_tf[serving]', i.e. tensorflow-serving-api):

    outputs = predict_grpc("localhost:8500", images, signature_name="decompose")
    outputs["segmentation"]                          # int32 [N, S, S]

Images are checked before they are sent: the uint8 signatures (decompose, features)
take uint8, integers in 0..255, or floats in [0, 1], which are converted explicitly as
round(x * 255); decompose_float takes finite floats in [0, 1]. Anything else (0-255
floats, 300, NaN) raises a ValueError naming the fix instead of being cast silently.
"""
import numpy as np

# Inputs each signature takes: name -> dtype.
SIGNATURE_INPUTS = {
    "serving_default": {"images": np.uint8},
    "decompose": {"images": np.uint8},
    "decompose_float": {"images": np.float32},
    "features": {"images": np.uint8},
    "generate": {"num_images": np.int32, "seed": np.int64},
}


def _uint8_images(signature_name, images):
    """images as uint8 for a uint8 signature, converted only where nothing is lost.

    Floats in [0, 1] become round(x * 255); integers in 0..255 are kept. Anything else
    is refused: numpy's cast would turn 0.7 into 0 and 300 into 44 without a word.
    """
    array = np.asarray(images)
    if array.dtype == np.uint8:
        return array
    fix = f"signature {signature_name!r} takes uint8 images (0-255)"
    if array.dtype.kind == "f":
        _check_unit_floats(array, f"{fix} or floats in [0, 1] (sent as round(x * 255))",
                           "convert 8-bit images with numpy.asarray(images, numpy.uint8) "
                           "or divide them by 255")
        return np.round(array.astype(np.float64) * 255).astype(np.uint8)
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{fix}; got integers from {array.min()} to {array.max()}: "
                             "scale or clip them to 0..255 first")
        return array.astype(np.uint8)
    raise ValueError(f"{fix}; got dtype {array.dtype}: convert with "
                     "numpy.asarray(images, numpy.uint8)")


def _check_unit_floats(array, takes, fix):
    """Refuses float images that are not finite or not in [0, 1], naming the fix."""
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{takes}; got {np.size(array) - np.isfinite(array).sum()} NaN or "
                         "infinite values: replace them (e.g. numpy.nan_to_num) first")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{takes}; got floats from {array.min():g} to {array.max():g}: "
                         f"{fix}")


def _convert(signature_name, name, value, dtype):
    if name == "images" and dtype == np.uint8:
        return _uint8_images(signature_name, value)
    original = np.asarray(value)
    if name == "images":
        if original.dtype.kind != "f":
            raise ValueError(f"signature {signature_name!r} takes float images in [0, 1]; got "
                             f"dtype {original.dtype}: divide 8-bit images by 255 or use the "
                             "decompose signature")
        _check_unit_floats(original, f"signature {signature_name!r} takes floats in [0, 1]",
                           "divide 8-bit images by 255 or use the decompose signature")
        return np.asarray(original, dtype=dtype)
    # Scalars such as num_images: refused rather than truncated (2.5) or wrapped (2**40).
    try:
        converted = np.asarray(value, dtype=dtype)
    except OverflowError:
        converted = None
    if converted is None or not np.array_equal(converted, original):
        raise ValueError(f"{name}={value!r} does not fit {np.dtype(dtype).name}")
    return converted


def _inputs(signature_name, inputs):
    if signature_name not in SIGNATURE_INPUTS:
        raise ValueError(f"unknown signature {signature_name!r}; the export has "
                         f"{sorted(SIGNATURE_INPUTS)}")
    expected = SIGNATURE_INPUTS[signature_name]
    if sorted(inputs) != sorted(expected):
        raise ValueError(f"signature {signature_name!r} takes inputs {sorted(expected)}, "
                         f"got {sorted(inputs)}")
    return {name: _convert(signature_name, name, value, expected[name])
            for name, value in inputs.items()}


def rest_request(images=None, signature_name="decompose", **inputs):
    """The JSON body of a REST predict request.

    Image signatures use TF Serving's row format, {"signature_name": ..., "instances":
    [image, ...]}, answered by {"predictions": [{output: value, ...} per image]};
    generate, whose inputs are scalars, uses the columnar format, {"inputs": {...}},
    answered by {"outputs": {output: value}}.
    """
    if images is not None:
        inputs["images"] = images
    arrays = _inputs(signature_name, inputs)
    if list(arrays) == ["images"]:
        return {"signature_name": signature_name, "instances": arrays["images"].tolist()}
    return {"signature_name": signature_name,
            "inputs": {name: value.tolist() for name, value in arrays.items()}}


def grpc_request(images=None, signature_name="decompose", model_name="genesis",
                 **inputs):
    """A tensorflow_serving.apis.predict_pb2.PredictRequest for the signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if images is not None:
        inputs["images"] = images
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in _inputs(signature_name, inputs).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def predict_grpc(server, images=None, signature_name="decompose", model_name="genesis",
                 timeout=60.0, **inputs):
    """Sends one request to `server` ('host:8500'); returns {output name: ndarray}."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = grpc_request(images, signature_name, model_name, **inputs)
    # Decompositions of large batches exceed gRPC's default 4 MB message limit.
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
