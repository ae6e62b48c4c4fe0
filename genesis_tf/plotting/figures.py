"""Labelled figures (matplotlib) of decompositions and generations, for people to read.

``decomposition_figure``: one row per image — input, reconstruction, segmentation, then
each slot's contribution m_k·x_k and each slot's mask m_k — with column headers, the
slots' colours (the segmentation paints each pixel in the colour of its slot, and each
slot's tiles are framed in that colour) and, optionally, the image's foreground ARI in the
row label. GENESIS-V2 has two mask sets: the columns above show its decoded masks (they
give the reconstruction; headed "segmentation (decoded)", "decoded mask k"), and further
columns its IC-SBP masks ("segmentation (IC-SBP)", "IC-SBP mask k"), with the ARI of each
set in the row label.

``generation_figure``: one row per generated scene, built component by component as in
the GENESIS paper's figure 3: after step k the canvas shows Σ_{j≤k} m_j·x_j, so the scene
appears slot by slot; the last column is the segmentation.

``samples_figure``: a grid of generated scenes.

``traversal_figure``: latent traversals of one slot (MONet's figure 5), one latent
dimension per row.

All have a fixed size in pixels (``figure_size``), so the PNGs are comparable between
runs. The colours and NumPy pieces come from genesis_tf.plotting.grids (below this module,
and what TensorBoard's previews use); python -m genesis_tf.visualise draws these figures
of a trained run.
"""
import numpy as np

from genesis_tf.plotting.grids import masked_components, segmentation_colours, slot_colour

# The papers' names of the model classes, for titles.
MODEL_NAMES = {"Genesis": "GENESIS", "GenesisS": "GENESIS-S", "MONet": "MONet",
               "GenesisV2": "GENESIS-V2", "BDVAE": "BD-VAE", "DCVAE": "DC-VAE"}

TILE_INCHES = 0.9
DPI = 100
LABEL_INCHES = 1.1  # room for the row labels on the left
TITLE_INCHES = 0.8  # room for the title and the column headers on top
RIGHT_INCHES = 0.1  # so that the last column's frame is not cut


def figure_size(rows, columns):
    """(width, height) in pixels of a figure with rows × columns tiles."""
    width = LABEL_INCHES + columns * TILE_INCHES + RIGHT_INCHES
    height = TITLE_INCHES + rows * TILE_INCHES
    return int(round(width * DPI)), int(round(height * DPI))


def model_title(model):
    """The paper's name of a model's class (GENESIS-S, BD-VAE, ...), else the class name."""
    name = type(model).__name__
    return MODEL_NAMES.get(name, name)


def _figure(rows, columns, title):
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; no display needed
    import matplotlib.pyplot as plt

    width, height = figure_size(rows, columns)
    figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    figure.suptitle(title, fontsize=10, y=1 - 0.18 * TITLE_INCHES * DPI / height)
    left = LABEL_INCHES * DPI / width
    top = 1 - TITLE_INCHES * DPI / height
    axes = figure.subplots(rows, columns, squeeze=False,
                           gridspec_kw=dict(left=left, right=1 - RIGHT_INCHES * DPI / width,
                                            bottom=0.005, top=top,
                                            wspace=0.06, hspace=0.06))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes


def _show(ax, image, frame=None, cmap=None):
    ax.imshow(np.clip(image, 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    for spine in ax.spines.values():
        spine.set_color(frame if frame is not None else "0.8")
        spine.set_linewidth(2.0 if frame is not None else 0.5)


def _header(ax, text, colour=None):
    # Slot colours darkened for legible text on white (yellow would vanish).
    colour = "black" if colour is None else np.asarray(colour) * 0.75
    ax.set_title(text, fontsize=7, color=colour, pad=3)


def decomposition_figure(images, out, title="GENESIS decomposition", aris=None, max_rows=8):
    """A labelled matplotlib Figure of a forward pass (see the module docstring).

    images: [B, H, W, 3] in [0, 1]; out: a SceneOutput; aris: optional per-image
    foreground ARI [B] (NaN where an image has no foreground), or for GENESIS-V2's two mask
    sets {'IC-SBP': [B], 'decoded': [B]} (segmentation.foreground_aris gives either).
    """
    images = np.asarray(images)[:max_rows]
    log_masks = np.asarray(out.log_masks)[:max_rows]
    rows, slots = len(images), log_masks.shape[1]
    ic_sbp = getattr(out, "ic_sbp_log_masks", None)
    ic_sbp = None if ic_sbp is None else np.asarray(ic_sbp)[:rows]
    recon = np.asarray(out.recon)[:rows]
    parts = masked_components(log_masks, np.asarray(out.components)[:rows])
    columns = 3 + 2 * slots + (0 if ic_sbp is None else 1 + slots)
    figure, axes = _figure(rows, columns, title)
    for i in range(rows):
        _show(axes[i, 0], images[i])
        _show(axes[i, 1], recon[i])
        for k in range(slots):
            _show(axes[i, 3 + k], parts[i, k], frame=slot_colour(k))
        axes[i, 0].set_ylabel(_row_label(i, aris), fontsize=7, rotation=0, ha="right",
                              va="center", labelpad=6)
    for j, text in enumerate(("input", "reconstruction")):
        _header(axes[0, j], text)
    for k in range(slots):
        _header(axes[0, 3 + k], f"slot {k + 1}: m·x", slot_colour(k))
    if ic_sbp is None:
        _mask_columns(axes, log_masks, 2, 3 + slots, "segmentation", "mask {}")
    else:  # the decoded masks where other models' masks are, the IC-SBP masks after them
        _mask_columns(axes, log_masks, 2, 3 + slots, "segmentation\n(decoded)",
                      "decoded mask {}")
        _mask_columns(axes, ic_sbp, 3 + 2 * slots, 4 + 2 * slots, "segmentation\n(IC-SBP)",
                      "IC-SBP mask {}")
    return figure


def _mask_columns(axes, log_masks, segmentation_column, first_mask_column, segmentation_header,
                  mask_header):
    """One mask set: its segmentation in one column, its K masks from another on."""
    segmentation = segmentation_colours(log_masks)
    masks = np.exp(log_masks[..., 0])  # [B, K, H, W]
    for i in range(len(log_masks)):
        _show(axes[i, segmentation_column], segmentation[i])
        for k in range(masks.shape[1]):
            _show(axes[i, first_mask_column + k], masks[i, k], frame=slot_colour(k),
                  cmap="gray")
    _header(axes[0, segmentation_column], segmentation_header)
    for k in range(masks.shape[1]):
        _header(axes[0, first_mask_column + k], mask_header.format(k + 1), slot_colour(k))


def _row_label(i, aris):
    """'image i' and the image's foreground ARI(s) where defined."""
    label = f"image {i + 1}"
    if aris is None:
        return label
    named = aris.items() if isinstance(aris, dict) else [(None, aris)]
    for name, values in named:
        if np.isfinite(values[i]):
            label += f"\n{name + ' ' if name else ''}ARI {values[i]:.2f}"
    return label


def generation_figure(samples, title="GENESIS generation, slot by slot", max_rows=8):
    """A labelled matplotlib Figure of generated scenes built component by component."""
    log_masks = np.asarray(samples.log_masks)[:max_rows]
    rows, slots = log_masks.shape[0], log_masks.shape[1]
    parts = masked_components(log_masks, np.asarray(samples.components)[:rows])
    canvases = np.cumsum(parts, axis=1)  # after step k: Σ_{j≤k} m_j x_j
    segmentation = segmentation_colours(log_masks)
    figure, axes = _figure(rows, slots + 1, title)
    for i in range(rows):
        for k in range(slots):
            _show(axes[i, k], canvases[i, k], frame=slot_colour(k))
        _show(axes[i, slots], segmentation[i])
        axes[i, 0].set_ylabel(f"scene {i + 1}", fontsize=7, rotation=0, ha="right",
                              va="center", labelpad=6)
    for k in range(slots):
        _header(axes[0, k], "slot 1" if k == 0 else f"+ slot {k + 1}", slot_colour(k))
    _header(axes[0, slots], "segmentation")
    return figure


def samples_figure(samples, title="Samples from the prior", columns=8):
    """A labelled grid of generated scenes (their reconstructions), `columns` per row."""
    images = np.asarray(samples.recon)
    rows = -(-len(images) // columns)
    figure, axes = _figure(rows, columns, title)
    for index, ax in enumerate(axes.flat):
        if index < len(images):
            _show(ax, images[index])
        else:
            ax.set_axis_off()
    for i in range(rows):
        first, last = i * columns + 1, min((i + 1) * columns, len(images))
        axes[i, 0].set_ylabel(f"samples\n{first}–{last}", fontsize=7, rotation=0,
                              ha="right", va="center", labelpad=6)
    return figure


def traversal_figure(traversal, title="Latent traversal"):
    """A labelled Figure of a genesis_tf.traversal.Traversal: one row per latent dimension,
    the input image first, then the decoded scene at each value (offsets in stds)."""
    rows, values = traversal.scenes.shape[:2]
    colour = slot_colour(traversal.slot)
    figure, axes = _figure(rows, values + 1, title)
    for i, (group, dim) in enumerate(traversal.rows):
        _show(axes[i, 0], traversal.image)
        for j in range(values):
            _show(axes[i, 1 + j], traversal.scenes[i, j], frame=colour)
        axes[i, 0].set_ylabel(f"{group}\ndim {dim}\nstd {traversal.stds[i]:.2g}",
                              fontsize=7, rotation=0, ha="right", va="center", labelpad=6)
    _header(axes[0, 0], "input")
    for j, offset in enumerate(traversal.offsets):
        _header(axes[0, 1 + j], "mean" if abs(offset) < 1e-9 else f"{offset:+.2g} std",
                colour)
    return figure


def save_figure(figure, path):
    """Writes the figure as PNG at its fixed pixel size and closes it; returns path."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def figure_text(figure):
    """Every text drawn on the figure (title, headers, row labels), for tests."""
    texts = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    for ax in figure.axes:
        texts += [ax.get_title(), ax.get_ylabel()]
    return [t for t in texts if t]
