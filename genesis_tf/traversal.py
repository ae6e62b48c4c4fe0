"""Latent traversals (MONet's figure 5): vary one latent dimension of one slot, decode.

``traverse(model, images)`` encodes the images with posterior means, picks the slot to
traverse in the first image and, for each latent group of the model (GENESIS: "mask" and
"component"), the dimensions that vary most across the images: the variance of the
posterior means over every image and slot given (the "active units" criterion of Burda et
al. 2016; inactive dimensions decode to nothing visible). Each chosen dimension becomes a
row: it is set to mean ± span·std (std over the same images and slots) in ``num_values``
steps while every other latent keeps its posterior mean, and the model's ``decode`` draws
the scene. Works for every model of the contract (genesis_tf/models/base.py).
"""
from typing import Any, NamedTuple

import numpy as np


class Traversal(NamedTuple):
    image: Any  # [H, W, 3] the first input image
    slot: int  # 0-based slot traversed
    rows: list  # [(group, dim)] per row
    offsets: Any  # [V] the values' offsets from the mean, in stds
    stds: Any  # [R] each row's std (over images and slots): offset·std is added
    scenes: Any  # [R, V, H, W, 3] decoded scenes
    slot_masks: Any  # [R, V, H, W] the traversed slot's mask in each scene


def default_slot(log_masks):
    """The slot covering most pixels apart from the largest (usually the background);
    log_masks: [K, H, W, 1] of one image. One slot: 0."""
    areas = np.exp(np.asarray(log_masks, np.float64)).sum(axis=(1, 2, 3))
    return 0 if len(areas) == 1 else int(np.argsort(-areas, kind="stable")[1])


def traverse(model, images, slot=None, dims_per_group=3, num_values=7, span=2.0):
    """A Traversal of slot ``slot`` (0-based; default ``default_slot``) of images[0].

    images: [N, H, W, 3], N ≥ 2 for meaningful spreads (the first is traversed).
    """
    if num_values < 2 or dims_per_group < 1 or span <= 0:
        raise ValueError("need num_values >= 2, dims_per_group >= 1 and span > 0, got "
                         f"{num_values}, {dims_per_group}, {span}")
    images = np.asarray(images)
    out = model(images, training=False, deterministic=True)
    latents = {name: np.asarray(value, np.float32)
               for name, value in model.latents(out).items()}
    num_slots = next(iter(latents.values())).shape[1]
    if slot is None:
        slot = default_slot(np.asarray(out.log_masks)[0])
    elif not 0 <= slot < num_slots:
        raise ValueError(f"slot {slot + 1} does not exist: the model has {num_slots} "
                         f"slot(s), numbered 1..{num_slots}")
    offsets = np.linspace(-span, span, num_values)
    rows, stds, edited = [], [], []
    for group in model.latent_sizes():
        z = latents[group]
        std = z.reshape(-1, z.shape[-1]).std(axis=0)
        for dim in np.argsort(-std, kind="stable")[:dims_per_group]:
            rows.append((group, int(dim)))
            stds.append(float(std[dim]))
            for offset in offsets:
                copy = {name: value[:1].copy() for name, value in latents.items()}
                copy[group][0, slot, dim] += offset * std[dim]
                edited.append(copy)
    batch = {name: np.concatenate([e[name] for e in edited]) for name in latents}
    decoded = model.decode(batch)
    size = images.shape[1:3]
    scenes = np.asarray(decoded.recon).reshape(len(rows), num_values, *size, 3)
    masks = np.exp(np.asarray(decoded.log_masks)[:, slot, ..., 0])
    return Traversal(image=images[0] if images.dtype != np.uint8 else images[0] / 255.0,
                     slot=slot, rows=rows, offsets=offsets, stds=np.array(stds),
                     scenes=scenes,
                     slot_masks=masks.reshape(len(rows), num_values, *size))
