"""TensorBoard summaries with the reference's names, and preview images."""
import numpy as np
import tensorflow as tf

from genesis_tf.plotting import grids

OPTIM_NAMES = {"beta": "optim/beta", "err_ema": "optim/geco_err_ema",
               "steps_per_sec": "optim/steps_per_sec"}


def write_scalars(writer, step, metrics, prefix):
    """train/err, train/kl_m, train/kl_l, train/elbo (or val/...: every loss term under
    its summary name) and the optim/ values."""
    with writer.as_default(step=step):
        for key, value in metrics.items():
            tf.summary.scalar(OPTIM_NAMES.get(key, f"{prefix}/{key}"), value)


def write_images(writer, step, images, out, samples):
    """Inputs, reconstructions, colour-coded segmentations, components and prior samples."""
    images = np.asarray(images)
    with writer.as_default(step=step):
        tf.summary.image("images/input", images, max_outputs=8)
        tf.summary.image("images/recon", np.clip(np.asarray(out.recon), 0, 1), max_outputs=8)
        tf.summary.image("images/segmentation",
                         grids.segmentation_colours(out.log_masks), max_outputs=8)
        tf.summary.image("images/decomposition",
                         grids.decomposition_grid(images, out)[None], max_outputs=1)
        tf.summary.image("images/samples",
                         grids.generation_grid(samples)[None], max_outputs=1)
