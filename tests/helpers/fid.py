"""A stand-in for the FID Inception graph (classify_image_graph_def.pb, 95 MB, not
available offline): a tiny frozen graph in the real file's format, and what it computes.

What it reproduces of the real file: input ``Mul``, output ``pool_3`` [N, 1, 1, D], batch-1
``_output_shapes`` attributes, a batch-1 Reshape after pool_3 and the deprecated
BatchNormWithGlobalNormalization op under an old GraphDef producer version.
"""
import numpy as np
import tensorflow as tf

DIM = 8


def standin_parameters():
    rng = np.random.default_rng(11)
    return {
        "kernel": rng.normal(size=(8, 8, 3, DIM)).astype(np.float32),
        "mean": rng.normal(size=DIM).astype(np.float32),
        "variance": rng.uniform(0.5, 2.0, size=DIM).astype(np.float32),
        "beta": rng.normal(size=DIM).astype(np.float32),
        "gamma": rng.uniform(0.5, 2.0, size=DIM).astype(np.float32),
    }


def standin_graph_def(with_pool_3=True):
    """Frozen graph shaped like classify_image_graph_def.pb, batch 1 baked in."""
    p = standin_parameters()
    graph = tf.Graph()
    with graph.as_default():
        raw = tf.compat.v1.placeholder(tf.float32, [1, 299, 299, 3], name="ResizeBilinear")
        normalised = tf.multiply(tf.subtract(raw, 128.0, name="Sub"), 1 / 128, name="Mul")
        conv = tf.nn.conv2d(normalised, p["kernel"], strides=37, padding="VALID", name="conv")
        tf.identity(conv, name="conv_bn")  # rewritten to the old batch-norm op below
        relu = tf.nn.relu(graph.get_tensor_by_name("conv_bn:0"), name="relu")
        pool = tf.nn.avg_pool2d(
            relu, ksize=8, strides=8, padding="VALID", name="pool_3" if with_pool_3 else "pool"
        )
        tf.nn.softmax(tf.reshape(pool, [1, DIM], name="pool_3/_reshape"), name="softmax")
        for name in ("mean", "variance", "beta", "gamma"):
            tf.constant(p[name], name=f"bn_{name}")
    # add_shapes records batch-1 `_output_shapes`, as in the real file.
    graph_def = graph.as_graph_def(add_shapes=True)
    for node in graph_def.node:
        if node.name == "conv_bn":
            node.op = "BatchNormWithGlobalNormalization"
            del node.input[:]
            node.input.extend(["conv", "bn_mean", "bn_variance", "bn_beta", "bn_gamma"])
            node.attr["variance_epsilon"].f = 1e-3
            node.attr["scale_after_normalization"].b = True
    graph_def.versions.producer = 5  # the op was removed at version 9
    return graph_def


def standin_features(images):
    """What the stand-in computes from `Mul` on, written with current TF ops."""
    p = standin_parameters()
    conv = tf.nn.conv2d(images, p["kernel"], strides=37, padding="VALID")
    normed = (conv - p["mean"]) * tf.math.rsqrt(p["variance"] + 1e-3) * p["gamma"] + p["beta"]
    pooled = tf.nn.avg_pool2d(tf.nn.relu(normed), ksize=8, strides=8, padding="VALID")
    return tf.reshape(pooled, [-1, DIM]).numpy().astype(np.float64)
