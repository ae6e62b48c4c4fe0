"""The demo end to end in a tiny mode, and the figures it draws."""
import numpy as np
from PIL import Image
from training_helpers import run_binary

from genesis_tf import figures, visualise
from genesis_tf.models import SceneOutput


def test_demo_writes_figures_and_prints_where(tmp_path):
    result = run_binary("genesis_tf.demo", [
        f"--output_dir={tmp_path}", "--dataset=synthetic", "--max_steps=2",
        "--gin_bindings=NUM_SLOTS = 3", "--gin_bindings=train.batch_size = 4",
        "--gin_bindings=train.image_summary_every = 0"])
    assert result.returncode == 0, result.stderr[-3000:]
    # 8 rows; input, reconstruction, segmentation and K=3 slots and masks; generation: the
    # K canvases of the slot-by-slot build and the segmentation.
    for name, columns in (("decomposition.png", 3 + 2 * 3), ("generation.png", 3 + 1)):
        path = tmp_path / name
        assert str(path) in result.stdout
        assert Image.open(path).size == figures.figure_size(8, columns)
    assert "on 256 test images: foreground ARI" in result.stdout
    assert "the GENESIS paper: foreground ARI 0.57" in result.stdout
    assert "Done after 2 steps" in result.stdout
    assert (tmp_path / "model" / "ckpt-2.index").exists()


def test_segmentation_colours_follow_the_largest_mask():
    log_masks = np.log(np.array([0.7, 0.2, 0.1]))[None, :, None, None, None] * np.ones(
        (1, 3, 2, 2, 1))
    log_masks[0, :, 1, 1, 0] = np.log([0.1, 0.1, 0.8])
    colours = visualise.segmentation_colours(log_masks)
    np.testing.assert_allclose(colours[0, 0, 0], visualise.PALETTE[0])
    np.testing.assert_allclose(colours[0, 1, 1], visualise.PALETTE[2])


def test_decomposition_grid_tiles():
    b, k, s = 2, 3, 4
    masks = np.full((b, k, s, s, 1), np.log(1 / k))
    comps = np.ones((b, k, s, s, 3))
    out = SceneOutput(recon=np.ones((b, s, s, 3)), log_masks=masks, components=comps)
    grid = visualise.decomposition_grid(np.zeros((b, s, s, 3)), out)
    assert grid.shape == (b * (s + 2) + 2, (3 + k) * (s + 2) + 2, 3)
    # The input tile (black) and a component tile (m_k · x_k = 1/3) sit where expected.
    np.testing.assert_allclose(grid[2:2 + s, 2:2 + s], 0.0)
    np.testing.assert_allclose(grid[2:2 + s, 2 + 3 * (s + 2):2 + 3 * (s + 2) + s], 1 / 3)
