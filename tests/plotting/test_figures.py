"""The demo's labelled figures: their text and their pixel size."""
import numpy as np
from PIL import Image

from genesis_tf.models import SceneOutput
from genesis_tf.plotting import figures, grids


def _scene_output(batch=2, slots=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, slots, size, size, 1))
    log_masks = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    components = rng.uniform(size=(batch, slots, size, size, 3))
    recon = (np.exp(log_masks) * components).sum(axis=1)
    return SceneOutput(recon=recon, log_masks=log_masks, components=components)


def test_decomposition_figure_has_its_labels_and_size(tmp_path):
    out = _scene_output()
    figure = figures.decomposition_figure(out.recon, out, title="a title",
                                          aris=[0.61, float("nan")])
    text = figures.figure_text(figure)
    assert "a title" in text
    for label in ("input", "reconstruction", "segmentation", "slot 1: m·x", "slot 3: m·x",
                  "mask 1", "mask 3", "image 1\nARI 0.61", "image 2"):
        assert label in text, (label, text)
    path = figures.save_figure(figure, str(tmp_path / "d.png"))
    assert Image.open(path).size == figures.figure_size(2, 3 + 2 * 3)
    # The slot columns are framed in the slot's segmentation colour.
    slot_axes = figure.axes[3]
    np.testing.assert_allclose(slot_axes.spines["top"].get_edgecolor()[:3],
                               grids.PALETTE[0], atol=1e-6)


def test_generation_figure_builds_the_scene_slot_by_slot(tmp_path):
    samples = _scene_output(batch=3, slots=4)
    figure = figures.generation_figure(samples, title="generated")
    text = figures.figure_text(figure)
    for label in ("generated", "slot 1", "+ slot 2", "+ slot 4", "segmentation", "scene 3"):
        assert label in text, (label, text)
    # The last canvas is the whole scene: Σ_k m_k x_k.
    last = figure.axes[3].get_images()[0].get_array()
    np.testing.assert_allclose(last, np.clip(samples.recon[0], 0, 1), atol=1e-6)
    path = figures.save_figure(figure, str(tmp_path / "g.png"))
    assert Image.open(path).size == figures.figure_size(3, 4 + 1)


def test_titles_name_models_as_the_papers_do():
    GenesisS = type("GenesisS", (), {})
    NewModel = type("NewModel", (), {})
    assert figures.model_title(GenesisS()) == "GENESIS-S"
    assert figures.model_title(NewModel()) == "NewModel"
