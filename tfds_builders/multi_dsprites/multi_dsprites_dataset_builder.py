"""Coloured Multi-dSprites as in the GENESIS paper (appendix A).

64×64 RGB scenes of 1–4 dSprites sprites composited with occlusion on a background; each
colour channel of each sprite and of the background is one of 5 equally spread levels.
50,000 / 10,000 / 10,000 train / validation / test examples.

Configs:
  colored, colored_unique: sprites from the real dSprites archive (from --manual_dir when
      it holds the file, else downloaded); colours may repeat within a scene / are all
      distinct.
  offline_colored (default), offline_colored_unique: sprites drawn by sprites.render, no
      download.
Every config is seeded: building it twice gives the same bytes.
"""
import dataclasses
import hashlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads
from tfds_builders.multi_dsprites import sprites

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = f"https://github.com/deepmind/dsprites-dataset/raw/master/{DSPRITES_FILE}"
# The archive's MD5 as published alongside it; checked after download or manual copy.
DSPRITES_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
DSPRITES_ROWS = 737_280
OFFLINE_ADVICE = (
    f"Without network access, download {DSPRITES_FILE} elsewhere, put it into a folder and "
    "pass that folder with --manual_dir=<folder>, or build an offline config "
    "(--config=offline_colored or --config=offline_colored_unique), which needs no download."
)

# Split sizes of the paper; tests shrink them.
SPLIT_SIZES = {"train": 50_000, "validation": 10_000, "test": 10_000}
_SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
_CHUNK = 1000


@dataclasses.dataclass
class MultiDspritesConfig(tfds.core.BuilderConfig):
    offline: bool = False
    unique_colours: bool = False
    seed: int = 0


class Builder(tfds.core.GeneratorBasedBuilder):
    """Coloured Multi-dSprites scenes with instance masks and per-object latents."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Optional, only for the 'colored' configs: put {DSPRITES_FILE} (from "
        f"{DSPRITES_URL}) into the manual_dir; without it the builder downloads the file. "
        "The 'offline_*' configs need nothing."
    )
    BUILDER_CONFIGS = [
        MultiDspritesConfig(name="colored", description="dSprites archive, colours may repeat."),
        MultiDspritesConfig(name="colored_unique", unique_colours=True, seed=1,
                            description="dSprites archive, distinct colours per scene."),
        MultiDspritesConfig(name="offline_colored", offline=True, seed=2,
                            description="Self-rendered dSprites shapes, colours may repeat."),
        MultiDspritesConfig(name="offline_colored_unique", offline=True, unique_colours=True,
                            seed=3, description="Self-rendered shapes, distinct colours."),
    ]
    # The default needs no download, so a bare build command works offline; the paper's
    # experiments name their config explicitly (gin_configs/datasets/multi_dsprites.gin).
    DEFAULT_CONFIG_NAME = "offline_colored"

    def _info(self):
        size = sprites.IMAGE_SIZE
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3)),
                "instance_ids": tfds.features.Image(shape=(size, size, 1)),
                "num_objects": tfds.features.Scalar(dtype=np.int32),
                "background_color": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "objects": tfds.features.Sequence({
                    "shape": tfds.features.ClassLabel(names=list(sprites.SHAPES)),
                    "scale": np.float32,
                    "orientation": np.float32,
                    "x": np.float32,
                    "y": np.float32,
                    "color": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                }),
            }),
            supervised_keys=None,
            homepage="https://github.com/deepmind/dsprites-dataset",
        )

    def _split_generators(self, dl_manager):
        archive = None
        if not self.builder_config.offline:
            archive = self._archive_path(dl_manager)
        return {
            split: self._generate_examples(split, archive) for split in SPLIT_SIZES
        }

    def _archive_path(self, dl_manager):
        """The archive from --manual_dir if it is there, else downloaded from DSPRITES_URL."""
        path = downloads.manual_files(dl_manager, {"dsprites": DSPRITES_FILE}).get("dsprites")
        if path is None:
            path = downloads.download(dl_manager, {"dsprites": DSPRITES_URL},
                                      advice=OFFLINE_ADVICE)["dsprites"]
        _check_md5(path)
        return path

    def _generate_examples(self, split, archive):
        config = self.builder_config
        sprites_source = _ArchiveSprites(archive) if archive else None
        total = SPLIT_SIZES[split]
        for start in range(0, total, _CHUNK):
            rng = np.random.default_rng([config.seed, _SPLIT_SEEDS[split], start])
            count = min(_CHUNK, total - start)
            num_objects = rng.integers(1, sprites.MAX_OBJECTS + 1, count)
            n = int(num_objects.sum())
            if sprites_source is not None:
                latents, masks = sprites_source.sample(rng, n)
            else:
                latents = sprites.sample_latents(rng, n)
                masks = sprites.render(
                    latents["shape"], sprites.SCALES[latents["scale"]],
                    sprites.ORIENTATIONS[latents["orientation"]],
                    sprites.POSITIONS[latents["x"]], sprites.POSITIONS[latents["y"]])
            offsets = np.concatenate([[0], np.cumsum(num_objects)])
            for i in range(count):
                lo, hi = offsets[i], offsets[i + 1]
                colours = sprites.sample_colours(rng, hi - lo + 1, config.unique_colours)
                image, ids = sprites.compose(masks[lo:hi], colours[1:], colours[0])
                yield f"{split}_{start + i:06d}", {
                    "image": sprites.to_uint8(image),
                    "instance_ids": ids[..., None],
                    "num_objects": np.int32(hi - lo),
                    "background_color": colours[0].astype(np.float32),
                    "objects": {
                        "shape": latents["shape"][lo:hi],
                        "scale": sprites.SCALES[latents["scale"][lo:hi]].astype(np.float32),
                        "orientation": sprites.ORIENTATIONS[
                            latents["orientation"][lo:hi]].astype(np.float32),
                        "x": sprites.POSITIONS[latents["x"][lo:hi]].astype(np.float32),
                        "y": sprites.POSITIONS[latents["y"][lo:hi]].astype(np.float32),
                        "color": colours[1:].astype(np.float32),
                    },
                }


class _ArchiveSprites:
    """Sprites drawn uniformly from the rows of the dSprites archive."""

    def __init__(self, path):
        try:
            with tf.io.gfile.GFile(path, "rb") as f, np.load(f) as archive:
            # Only the numeric arrays are read; 'metadata' would need unpickling.
                self.images = archive["imgs"]
                self.classes = archive["latents_classes"]
        except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
            raise RuntimeError(
                f"{path} is not a readable dSprites archive ({error}); delete it and "
                f"download {DSPRITES_FILE} again"
            ) from error
        if self.images.shape[1:] != (64, 64) or self.classes.shape[1:] != (6,):
            raise RuntimeError(f"{path}: unexpected array shapes {self.images.shape}, "
                               f"{self.classes.shape}")

    def sample(self, rng, count):
        rows = rng.integers(0, len(self.images), count)
        classes = self.classes[rows]  # columns: colour, shape, scale, orientation, x, y
        latents = {
            "shape": classes[:, 1],
            "scale": classes[:, 2],
            "orientation": classes[:, 3],
            "x": classes[:, 4],
            "y": classes[:, 5],
        }
        return latents, self.images[rows].astype(bool)


def _check_md5(path):
    size = tf.io.gfile.stat(path).length
    if size < 1_000_000:  # small files are test fixtures in the real format, not the archive
        return
    digest = hashlib.md5()
    with tf.io.gfile.GFile(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != DSPRITES_MD5:
        raise RuntimeError(
            f"{path} has MD5 {digest.hexdigest()}, expected {DSPRITES_MD5}: the download is "
            f"corrupt or not the dSprites archive. Delete it and download {DSPRITES_URL} again."
        )
