"""Batch norm with the reference's (PyTorch's) semantics, fast on one replica.

PyTorch normalises with the biased batch variance and updates the running variance with
the unbiased one: running = 0.9·running + 0.1·batch (ε 1e-5). Keras 3's
BatchNormalization uses the biased variance for both and computes the moments with
separate ops. This layer keeps Keras' weights (gamma, beta, moving_mean, moving_variance),
so checkpoints are unchanged, and runs

- on one replica: TensorFlow's fused kernel (FusedBatchNormV3, oneDNN on CPU), called
  through the raw op because ``tf.nn.fused_batch_norm`` raises ε to 1.001e-5;
- on several replicas: sums and sums of squares all-reduced over the replicas, so every
  replica normalises with the global batch's moments and the moving statistics stay
  identical (unsynchronised copies drift apart and replica 0's is saved).
"""
import keras
import tensorflow as tf


class BatchNorm(keras.layers.BatchNormalization):
    """Batch norm over the last axis of [N, H, W, C] (or [N, C]) inputs."""

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        kwargs.pop("axis", None)
        kwargs.pop("synchronized", None)
        super().__init__(axis=-1, momentum=momentum, epsilon=epsilon, **kwargs)

    def call(self, inputs, training=None, mask=None):
        del mask
        if isinstance(training, tf.Tensor):
            training = tf.get_static_value(training)
        if not training or not self.trainable:
            return self._normalise(inputs, self.moving_mean, self.moving_variance)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            outputs, mean, unbiased_variance = self._train_synchronized(inputs)
        else:
            outputs, mean, unbiased_variance = self._train_fused(inputs)
        # The moving averages are statistics, not part of the loss.
        decay = self.momentum
        self.moving_mean.assign(
            self.moving_mean * decay + tf.stop_gradient(mean) * (1.0 - decay))
        self.moving_variance.assign(
            self.moving_variance * decay + tf.stop_gradient(unbiased_variance) * (1.0 - decay))
        return outputs

    def _as_4d(self, x):
        """FusedBatchNormV3 wants rank 4; dense inputs [N, C] become [N, 1, 1, C]."""
        return x if x.shape.rank == 4 else tf.reshape(x, [-1, 1, 1, x.shape[-1]])

    def _normalise(self, inputs, mean, variance):
        x = self._as_4d(inputs)
        y = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.cast(mean, tf.float32), variance=tf.cast(variance, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=False)[0]
        return tf.reshape(y, tf.shape(inputs)) if inputs.shape.rank != 4 else y

    def _train_fused(self, inputs):
        x = self._as_4d(inputs)
        empty = tf.constant([], tf.float32)
        # In training mode the op returns the batch mean and the *unbiased* batch variance
        # and normalises with the biased one — PyTorch's convention.
        y, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=empty, variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0,
            data_format="NHWC", is_training=True)
        y = tf.reshape(y, tf.shape(inputs)) if inputs.shape.rank != 4 else y
        return y, mean, unbiased_variance

    def _train_synchronized(self, inputs):
        """Normalises with the moments of the global batch (all replicas together)."""
        x = tf.cast(inputs, tf.float32)
        axes = list(range(inputs.shape.rank - 1))
        count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
        local = [tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), count]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            local = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
        total, total_squares, n = local
        mean = total / n
        variance = tf.maximum(total_squares / n - tf.square(mean), 0.0)
        y = tf.nn.batch_normalization(
            x, mean, variance, tf.cast(self.beta, tf.float32),
            tf.cast(self.gamma, tf.float32), self.epsilon)
        unbiased_variance = variance * n / tf.maximum(n - 1.0, 1.0)
        return tf.cast(y, inputs.dtype), mean, unbiased_variance
