"""TensorBoard summaries with the reference's names, and preview images."""
import numpy as np
import tensorflow as tf

from genesis_tf import visualise

SCALAR_NAMES = {
    "err": "err",
    "kl_m": "kl_m",
    "kl_l": "kl_l",
    "elbo": "elbo",
}


def write_scalars(writer, step, metrics, prefix):
    """train/err, train/kl_m, train/kl_l, train/elbo (or val/...) and the optim/ values."""
    with writer.as_default(step=step):
        for key, name in SCALAR_NAMES.items():
            if key in metrics:
                tf.summary.scalar(f"{prefix}/{name}", metrics[key])
        if "beta" in metrics:
            tf.summary.scalar("optim/beta", metrics["beta"])
        if "err_ema" in metrics:
            tf.summary.scalar("optim/geco_err_ema", metrics["err_ema"])
        if "steps_per_sec" in metrics:
            tf.summary.scalar("optim/steps_per_sec", metrics["steps_per_sec"])


def write_images(writer, step, images, out, samples):
    """Inputs, reconstructions, colour-coded segmentations, components and prior samples."""
    images = np.asarray(images)
    with writer.as_default(step=step):
        tf.summary.image("images/input", images, max_outputs=8)
        tf.summary.image("images/recon", np.clip(np.asarray(out.recon), 0, 1), max_outputs=8)
        tf.summary.image("images/segmentation",
                         visualise.segmentation_colours(out.log_masks), max_outputs=8)
        tf.summary.image("images/decomposition",
                         visualise.decomposition_grid(images, out)[None], max_outputs=1)
        tf.summary.image("images/samples",
                         visualise.generation_grid(samples)[None], max_outputs=1)
