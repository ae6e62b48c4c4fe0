"""Requests to a TF Serving server that serves a genesis_tf export.

REST (no extra package):

    body = rest_request(images, "decompose")         # images: uint8 [N, S, S, 3]
    requests.post("http://localhost:8501/v1/models/genesis:predict", json=body)
    body = rest_request(signature_name="generate", num_images=4, seed=7)

gRPC (the optional extra: pip install 'genesis_tf[serving]', i.e. tensorflow-serving-api):

    outputs = predict_grpc("localhost:8500", images, signature_name="decompose")
    outputs["segmentation"]                          # int32 [N, S, S]
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


def _inputs(signature_name, inputs):
    if signature_name not in SIGNATURE_INPUTS:
        raise ValueError(f"unknown signature {signature_name!r}; the export has "
                         f"{sorted(SIGNATURE_INPUTS)}")
    expected = SIGNATURE_INPUTS[signature_name]
    if sorted(inputs) != sorted(expected):
        raise ValueError(f"signature {signature_name!r} takes inputs {sorted(expected)}, "
                         f"got {sorted(inputs)}")
    return {name: np.asarray(value, dtype=expected[name]) for name, value in inputs.items()}


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
