"""Pictures of decompositions and generations as NumPy arrays, and PNG files of them.

Grids have one row per scene: for a decomposition
``input | reconstruction | segmentation | m_1·x_1 | … | m_K·x_K``, for a generation
``scene | segmentation | m_1·x_1 | … | m_K·x_K`` (component-wise, as the GENESIS paper's
figures). Segmentations colour each pixel by the slot with the largest mask. A GENESIS-V2
decomposition (the SceneOutput has ``ic_sbp_log_masks``) shows its decoded masks there and
appends its IC-SBP masks: ``| IC-SBP segmentation | m_1 | … | m_K`` (masks in grey).

NumPy only (Pillow inside save_png): the training loop's TensorBoard summaries import this
module, so it must not pull in matplotlib, TensorFlow or anything above it.
"""
import numpy as np

# Distinct colours for up to 12 slots (more repeat).
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [170, 110, 40],
], np.float32) / 255.0


def slot_colour(k):
    """The palette colour [3] of slot k (0-based), the one its segmentation pixels get."""
    return PALETTE[k % len(PALETTE)]


def segmentation_colours(log_masks):
    """log masks [B, K, H, W, 1] -> colour-coded argmax [B, H, W, 3] in [0, 1]."""
    ids = np.argmax(np.asarray(log_masks)[..., 0], axis=1)
    return PALETTE[ids % len(PALETTE)]


def masked_components(log_masks, components):
    """m_k · x_k for every slot: [B, K, H, W, 3]."""
    return np.exp(np.asarray(log_masks)) * np.asarray(components)


def tile_grid(rows, pad=2):
    """rows: list (per scene) of lists of [H, W, 3] tiles -> one image with white gutters."""
    tiles = max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    grid = np.ones((len(rows) * (h + pad) + pad, tiles * (w + pad) + pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = np.clip(tile, 0.0, 1.0)
    return grid


def decomposition_grid(images, out, max_rows=8):
    """Inputs, reconstructions, segmentations and per-slot m_k·x_k of a forward pass (and
    GENESIS-V2's IC-SBP segmentations and masks)."""
    images = np.asarray(images)[:max_rows]
    recon = np.asarray(out.recon)[:max_rows]
    seg = segmentation_colours(np.asarray(out.log_masks)[:max_rows])
    parts = masked_components(np.asarray(out.log_masks)[:max_rows],
                              np.asarray(out.components)[:max_rows])
    rows = [[images[i], recon[i], seg[i], *parts[i]] for i in range(len(images))]
    if getattr(out, "ic_sbp_log_masks", None) is not None:
        ic_sbp = np.asarray(out.ic_sbp_log_masks)[:max_rows]
        ic_sbp_seg = segmentation_colours(ic_sbp)
        grey = np.repeat(np.exp(ic_sbp), 3, axis=-1)  # [B, K, H, W, 3]
        rows = [row + [ic_sbp_seg[i], *grey[i]] for i, row in enumerate(rows)]
    return tile_grid(rows)


def generation_grid(samples, max_rows=8):
    """Generated scenes, their segmentations and their components, slot by slot."""
    recon = np.asarray(samples.recon)[:max_rows]
    seg = segmentation_colours(np.asarray(samples.log_masks)[:max_rows])
    parts = masked_components(np.asarray(samples.log_masks)[:max_rows],
                              np.asarray(samples.components)[:max_rows])
    rows = [[recon[i], seg[i], *parts[i]] for i in range(len(recon))]
    return tile_grid(rows)


def to_uint8(image):
    """A float image in [0, 1] (clipped) as uint8 in [0, 255], rounded."""
    return (np.clip(np.asarray(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(image, path, scale=2):
    """Writes a float [H, W, 3] image in [0, 1] as PNG, enlarged `scale` times."""
    from PIL import Image

    picture = Image.fromarray(to_uint8(image))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    picture.save(path)
    return path
