"""The one evaluation forward pass: a model traced once and run over evaluation batches.

Every metric that needs the model's output on dataset images (segmentation scores, the
reconstructions FID scores, the probes' features, the validation ELBO) streams the
batches of ``genesis_tf.data.eval_dataset`` through `forward_batches`, so they agree on
what "the model on the evaluation images" means: inference mode, K = `num_slots`, and
the posterior sampled with the fixed seed `seed + batch index`, as the reference
evaluates, so a score repeats exactly.

    for batch, out in forward_batches(model, "synthetic", 32, num_images=64):
        ...  # out = model(batch["image"], training=False, num_slots=None, seed=0, 1, ...)
"""
import numpy as np


def scene(model, images, seed, num_slots=None):
    """The default forward: the model's SceneOutput with its posterior sampled by `seed`."""
    return model(images, training=False, num_slots=num_slots, seed=seed)


def features(model, images, seed, num_slots=None):
    """``model.features``: posterior means in inference mode, so `seed` is not needed."""
    del seed
    return model.features(images, **({} if num_slots is None else {"num_slots": num_slots}))


def forward_batches(model, dataset, image_size, *, split="test", data_dir=None,
                    batch_size=32, num_images=None, num_slots=None, seed=0, call=scene,
                    progress=None):
    """Yields (batch, output) for each batch of `num_images` (None: all) images of `split`.

    output = call(model, batch["image"], seed + batch index, num_slots), traced once
    (reduce_retracing: the last batch is usually smaller). `progress`, if given, is called
    with the number of images done once the caller has taken each batch. Raises
    ValueError if the split yields no image, DatasetCorruptError (naming the file) if a
    record is damaged.
    """
    import tensorflow as tf

    from genesis_tf import data as data_lib

    traced = tf.function(lambda images, batch_seed: call(model, images, batch_seed,
                                                         num_slots), reduce_retracing=True)
    batches = data_lib.eval_dataset(dataset, image_size, batch_size, split=split,
                                    data_dir=data_dir, max_examples=num_images)
    done = 0
    try:
        for index, batch in enumerate(batches):
            yield batch, traced(batch["image"], tf.constant(seed + index, tf.int32))
            done += int(np.shape(batch["image"])[0])
            if progress is not None:
                progress(done)
    except tf.errors.OpError as error:
        data_lib.raise_if_corrupt(error, dataset, data_dir)  # names the damaged file
        raise
    if not done:
        raise ValueError(f"the {split} split of {dataset} is empty")
