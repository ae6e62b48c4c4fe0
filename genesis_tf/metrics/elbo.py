"""The validation ELBO: every loss term and the negative ELBO, averaged over images.

    from genesis_tf.metrics import elbo
    elbo.evaluate(model, "multi_dsprites/colored", 64, 32, num_batches=10)
    -> {'err': ..., 'kl_m': ..., 'kl_l': ..., 'elbo': ...}   (summary names, nats/image)

The training loop's validation action writes these as val/err, val/kl_m, ..., val/elbo.
"""
import tensorflow as tf

from genesis_tf import data as data_lib
from genesis_tf.models.base import elbo, summary_name


def evaluate(model, dataset, image_size, batch_size, data_dir=None, num_batches=10,
             split="validation"):
    """Mean of every loss term and the negative ELBO over `num_batches` evaluation
    batches of `split` (the test split when the dataset has no such split):
    {'err', 'kl_m', ..., 'elbo'} under their summary names."""
    try:
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split=split,
                                   data_dir=data_dir, max_examples=num_batches * batch_size)
    except ValueError:  # no such split: fall back to test
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split="test",
                                   data_dir=data_dir, max_examples=num_batches * batch_size)

    @tf.function
    def sums_of(images):
        out = model(images, training=False)
        return {k: tf.reduce_sum(v) for k, v in model.loss_terms(images, out).items()}

    totals, count = {}, 0
    for batch in ds:
        for key, value in sums_of(batch["image"]).items():
            totals[key] = totals.get(key, 0.0) + float(value)
        count += int(batch["image"].shape[0])
    means = {key: value / max(count, 1) for key, value in totals.items()}
    result = {summary_name(key): value for key, value in means.items()}
    result["elbo"] = float(elbo(means))  # err + Σ kl/*, as the training summaries
    return result
