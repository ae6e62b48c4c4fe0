"""The one training step, used by the training loop, the benchmarks and the tests.

GECO (the default; the GENESIS paper's setting for every model it trains):

    loss = (Σ_batch err + β · Σ_batch Σ_k kl/*) / global batch size
    gradients -> optimizer -> GECO update with the batch-mean err of all replicas

Fixed weights (``kl_weights={"kl/z": 0.5, "kl/mask": 0.5}``: the MONet paper's β and γ):

    loss = (Σ_batch err + Σ_k w_k · Σ_batch kl/k) / global batch size, no GECO update

Run it per replica with ``strategy.run(step, args=(images,))`` or, under the default
strategy, call it directly (inside a tf.function). It returns the batch means of every
loss term (all-reduced, so the same on every replica): ``{"err": [], "kl/m": [], ...}``.
The loss is divided by the *global* batch size because tf.distribute sums the replicas'
gradients.
"""
import tensorflow as tf

from genesis_tf.models.base import ERR, kl_total


def make_train_step(model, optimizer, geco, global_batch_size, loss_scaling=False,
                    deterministic=False, seed_fn=None, kl_weights=None):
    """A replica step ``images [b, H, W, 3] -> {term: batch mean}``.

    Args:
      model: a SceneModel (genesis_tf/models/base.py).
      optimizer: built for ``model.trainable_variables`` (under the strategy's scope).
      geco: genesis_tf.geco.GECO.
      global_batch_size: images per step over all replicas.
      loss_scaling: the optimizer is a keras LossScaleOptimizer (mixed_float16).
      deterministic: posterior means instead of samples (exactness tests only).
      seed_fn: optional callable returning the posterior-noise seed of this step.
      kl_weights: None for GECO, else {kl term: weight} covering every ``kl/*`` term of
        the model (the weighted sum replaces GECO; ``geco`` may then be None).
    """
    variables = model.trainable_variables

    def step(images):
        with tf.GradientTape() as tape:
            out = model(images, training=True, deterministic=deterministic,
                        seed=seed_fn() if seed_fn is not None else None)
            sums = {k: tf.reduce_sum(v) for k, v in model.loss_terms(images, out).items()}
            if kl_weights is None:
                loss = geco.loss(sums[ERR], kl_total(sums)) / global_batch_size
            else:
                loss = (sums[ERR] + tf.add_n([
                    weight * sums[name] for name, weight in sorted(kl_weights.items())
                ])) / global_batch_size
            if loss_scaling:
                loss = optimizer.scale_loss(loss)
        # With loss scaling, apply_gradients unscales (and skips non-finite steps).
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        context = tf.distribute.get_replica_context()
        means = {k: v / global_batch_size
                 for k, v in context.all_reduce(tf.distribute.ReduceOp.SUM, sums).items()}
        if kl_weights is None:
            geco.update(means[ERR])  # the same value on every replica, so β stays identical
        return means

    return step
