"""GENESIS-V2's pictures: decompositions show the decoded and the IC-SBP masks, each
labelled; generation slot by slot and traversals of its one latent group work as for the
other models. A tiny untrained model (32×32, latent 16, K=3)."""
import numpy as np
import pytest
from PIL import Image

from genesis_tf import data, traversal
from genesis_tf.metrics.segmentation import foreground_ari, foreground_aris
from genesis_tf.models import MODELS
from genesis_tf.plotting import figures, grids

SIZE, K, ROWS = 32, 3, 2


@pytest.fixture(scope="module")
def decomposed():
    model = MODELS["GenesisV2"](image_size=SIZE, num_slots=K, latent_size=16).build_for_images()
    batch = next(iter(data.eval_dataset("synthetic", SIZE, ROWS)))
    return model, batch, model(batch["image"], training=False, seed=0)


def test_the_decomposition_figure_shows_both_mask_sets_labelled(decomposed, tmp_path):
    model, batch, out = decomposed
    true_ids = batch["instance_ids"].numpy()
    aris = foreground_aris(true_ids, out)
    figure = figures.decomposition_figure(batch["image"].numpy(), out, aris=aris,
                                          title=figures.model_title(model))
    texts = figures.figure_text(figure)
    ic_sbp_ari = foreground_ari(true_ids, out.ic_sbp_log_masks.numpy()[..., 0].argmax(1))[1]
    decoded_ari = foreground_ari(true_ids, out.log_masks.numpy()[..., 0].argmax(1))[1]
    for label in ("GENESIS-V2", "segmentation\n(decoded)", "segmentation\n(IC-SBP)",
                  "slot 3: m·x", f"image 1\nIC-SBP ARI {ic_sbp_ari[0]:.2f}\n"
                  f"decoded ARI {decoded_ari[0]:.2f}",
                  *(f"{masks} mask {k}" for masks in ("decoded", "IC-SBP")
                    for k in range(1, K + 1))):
        assert label in texts, (label, texts)
    # Columns: input, reconstruction, segmentation, K parts, K decoded masks, then the
    # IC-SBP segmentation and K IC-SBP masks; the tiles show what the headers say.
    columns = 3 + 2 * K + 1 + K
    axes = np.asarray(figure.axes).reshape(ROWS, columns)
    ic_sbp = out.ic_sbp_log_masks.numpy()
    assert axes[0, 3 + 2 * K].get_title() == "segmentation\n(IC-SBP)"
    np.testing.assert_allclose(axes[1, 3 + 2 * K].get_images()[0].get_array(),
                               grids.segmentation_colours(ic_sbp)[1])
    for k in range(K):
        assert axes[0, 4 + 2 * K + k].get_title() == f"IC-SBP mask {k + 1}"
        np.testing.assert_allclose(axes[1, 4 + 2 * K + k].get_images()[0].get_array(),
                                   np.exp(ic_sbp[1, k, ..., 0]), atol=1e-6)
        np.testing.assert_allclose(axes[1, 3 + K + k].get_images()[0].get_array(),
                                   np.exp(out.log_masks.numpy()[1, k, ..., 0]), atol=1e-6)
    path = figures.save_figure(figure, str(tmp_path / "decomposition.png"))
    assert Image.open(path).size == figures.figure_size(ROWS, columns)


def test_the_preview_grid_appends_the_ic_sbp_segmentation_and_masks(decomposed):
    _, batch, out = decomposed
    grid = grids.decomposition_grid(batch["image"].numpy(), out)
    tile = SIZE + 2
    assert grid.shape == (ROWS * tile + 2, (3 + K + 1 + K) * tile + 2, 3)
    x = 2 + (3 + K) * tile  # the IC-SBP segmentation, then its masks in grey
    np.testing.assert_allclose(grid[2:2 + SIZE, x:x + SIZE],
                               grids.segmentation_colours(out.ic_sbp_log_masks.numpy())[0])
    mask = np.exp(out.ic_sbp_log_masks.numpy()[0, K - 1])  # [H, W, 1]
    x += K * tile
    np.testing.assert_allclose(grid[2:2 + SIZE, x:x + SIZE], np.repeat(mask, 3, -1),
                               atol=1e-6)


def test_generation_slot_by_slot_and_traversals_of_the_slot_latents(decomposed):
    model, batch, _ = decomposed
    samples = model.sample(batch_size=2, seed=0)
    figure = figures.generation_figure(samples, title="generated")
    texts = figures.figure_text(figure)
    assert all(label in texts for label in ("slot 1", f"+ slot {K}", "segmentation"))
    last = np.asarray(figure.axes).reshape(2, K + 1)[0, K - 1].get_images()[0].get_array()
    np.testing.assert_allclose(last, np.clip(samples.recon[0], 0, 1), atol=1e-5)

    result = traversal.traverse(model, batch["image"].numpy(), dims_per_group=2)
    assert [group for group, _ in result.rows] == ["slot", "slot"]
    assert np.isfinite(result.scenes).all()
    assert np.abs(result.scenes[:, 0] - result.scenes[:, -1]).max() > 1e-4  # it varies
    texts = figures.figure_text(figures.traversal_figure(result, title="traversed"))
    assert "mean" in texts and any(t.startswith("slot\ndim ") for t in texts)
