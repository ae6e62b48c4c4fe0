"""TF Serving's warm-up file: assets.extra/tf_serving_warmup_requests.

TF Serving replays the requests in this TFRecord file when it loads a model version, so the
graph's first (slow) run happens before the first real request. Each record is a
serialised ``tensorflow.serving.PredictionLog`` holding a ``PredictRequest``.

The protocol-buffer classes live in ``tensorflow-serving-api``, which is an optional
extra; the few messages needed here are written with the protocol-buffer wire format
directly, so exporting needs TensorFlow only. tests/export parses the file with the real
classes.
"""
import os

import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"

# Field numbers from tensorflow_serving/apis/{prediction_log,predict,model}.proto.
_PREDICTION_LOG_PREDICT_LOG = 6
_PREDICT_LOG_REQUEST = 1
_PREDICT_REQUEST_MODEL_SPEC = 1
_PREDICT_REQUEST_INPUTS = 2  # map<string, TensorProto>: repeated {key = 1, value = 2}
_MODEL_SPEC_NAME = 1
_MODEL_SPEC_SIGNATURE_NAME = 3
_LENGTH_DELIMITED = 2


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (sub-message, string or bytes)."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def predict_request(inputs, signature_name, model_name=""):
    """A serialised PredictRequest; ``inputs`` maps input names to arrays or tensors."""
    spec = _field(_MODEL_SPEC_SIGNATURE_NAME, signature_name.encode())
    if model_name:
        spec = _field(_MODEL_SPEC_NAME, model_name.encode()) + spec
    request = _field(_PREDICT_REQUEST_MODEL_SPEC, spec)
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[name]).SerializeToString()
        request += _field(_PREDICT_REQUEST_INPUTS,
                          _field(1, name.encode()) + _field(2, tensor))
    return request


def prediction_log(inputs, signature_name, model_name=""):
    """A serialised PredictionLog whose predict_log holds one PredictRequest."""
    request = predict_request(inputs, signature_name, model_name)
    return _field(_PREDICTION_LOG_PREDICT_LOG, _field(_PREDICT_LOG_REQUEST, request))


def write_warmup_file(export_path, requests):
    """Writes ``export_path/assets.extra/tf_serving_warmup_requests``.

    requests: [(signature_name, {input name: value})], one record each.
    """
    folder = os.path.join(export_path, "assets.extra")
    tf.io.gfile.makedirs(folder)
    path = os.path.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log(inputs, signature_name))
    return path
