"""The NumPy grids behind TensorBoard's preview images (genesis_tf.plotting.grids)."""
import numpy as np

from genesis_tf.models import SceneOutput
from genesis_tf.plotting import grids


def test_segmentation_colours_follow_the_largest_mask():
    log_masks = np.log(np.array([0.7, 0.2, 0.1]))[None, :, None, None, None] * np.ones(
        (1, 3, 2, 2, 1))
    log_masks[0, :, 1, 1, 0] = np.log([0.1, 0.1, 0.8])
    colours = grids.segmentation_colours(log_masks)
    np.testing.assert_allclose(colours[0, 0, 0], grids.PALETTE[0])
    np.testing.assert_allclose(colours[0, 1, 1], grids.PALETTE[2])


def test_decomposition_grid_tiles():
    b, k, s = 2, 3, 4
    masks = np.full((b, k, s, s, 1), np.log(1 / k))
    comps = np.ones((b, k, s, s, 3))
    out = SceneOutput(recon=np.ones((b, s, s, 3)), log_masks=masks, components=comps)
    grid = grids.decomposition_grid(np.zeros((b, s, s, 3)), out)
    assert grid.shape == (b * (s + 2) + 2, (3 + k) * (s + 2) + 2, 3)
    # The input tile (black) and a component tile (m_k · x_k = 1/3) sit where expected.
    np.testing.assert_allclose(grid[2:2 + s, 2:2 + s], 0.0)
    np.testing.assert_allclose(grid[2:2 + s, 2 + 3 * (s + 2):2 + 3 * (s + 2) + s], 1 / 3)


def test_generation_grid_rows_are_scene_segmentation_and_each_slot():
    b, k, s = 3, 4, 5
    log_masks = np.log(np.full((b, k, s, s, 1), 1 / k))
    samples = SceneOutput(recon=np.full((b, s, s, 3), 0.5), log_masks=log_masks,
                          components=np.ones((b, k, s, s, 3)))
    grid = grids.generation_grid(samples, max_rows=2)
    assert grid.shape == (2 * (s + 2) + 2, (2 + k) * (s + 2) + 2, 3)
    np.testing.assert_allclose(grid[2:2 + s, 2:2 + s], 0.5)  # the scene
    np.testing.assert_allclose(grid[2:2 + s, 2 + 2 * (s + 2):2 + 2 * (s + 2) + s], 1 / k)
    assert (grid[:2] == 1.0).all()  # white gutters


def test_png_holds_the_clipped_rounded_image_enlarged(tmp_path):
    from PIL import Image

    image = np.array([[[-0.5, 0.5, 1.5], [0.25, 0.0, 1.0]]], np.float32)  # [1, 2, 3]
    np.testing.assert_array_equal(grids.to_uint8(image),
                                  [[[0, 128, 255], [64, 0, 255]]])
    path = grids.save_png(image, str(tmp_path / "x.png"), scale=3)
    written = np.asarray(Image.open(path))
    assert written.shape == (3, 6, 3)
    np.testing.assert_array_equal(written[2, 5], [64, 0, 255])


def test_grids_import_neither_matplotlib_nor_tensorflow():
    """TensorBoard summaries import the grids inside the training loop: they must stay
    NumPy-only (the labelled figures above them bring matplotlib)."""
    import subprocess
    import sys

    code = ("import sys, genesis_tf.plotting.grids; "
            "print(sorted(m for m in ('matplotlib', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
