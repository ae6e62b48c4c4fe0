"""ShapeStacks (Groth et al. 2018) for GENESIS: RGB renders, instance masks and labels.

Source archives (each from --manual_dir if present there, else downloaded):
  shapestacks-meta.tar.gz  splits/default/{train,eval,test}.txt, one scenario per line
  shapestacks-rgb.tar.gz   recordings/<scenario>/rgb-w=..-f=..-l=..-c=..-cam_<v>-mono-0.png
  shapestacks-iseg.tar.gz  iseg/<scenario>/iseg-w=0-f=0-l=0-c=original-cam_<v>-mono-0.map
A scenario name such as ``env_ccs-hard-h=2-vcom=0-vpsf=0-v=60`` gives the tower height (h)
and the centre-of-mass (vcom) and planar-surface (vpsf) violation flags: a tower is stable
iff both are 0. ``.map`` files are PNGs whose first channel is 32 × label (0 background,
1..6 blocks from the bottom). Each camera view (RGB render) is one example. Archives are
streamed with iter_archive, never extracted. Images stay at their rendered size (224×224);
cropping and resizing happen in genesis_tf.data.
"""
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads

BASE_URL = "http://shapestacks-file.robots.ox.ac.uk/static/download/v1"
ARCHIVES = {
    "meta": "shapestacks-meta.tar.gz",
    "rgb": "shapestacks-rgb.tar.gz",
    "iseg": "shapestacks-iseg.tar.gz",
}
SPLITS = {"train": "train", "validation": "eval", "test": "test"}
_SCENARIO = re.compile(r"-h=(\d+)-vcom=(\d+)-vpsf=(\d+)")
_VIEW = re.compile(r"-cam_(\d+)-")


def parse_scenario(name):
    """'env_ccs-hard-h=2-vcom=0-vpsf=0-v=60' -> (height 2, stable True)."""
    match = _SCENARIO.search(name)
    if not match:
        raise ValueError(f"not a ShapeStacks scenario name: {name!r}")
    height, vcom, vpsf = (int(g) for g in match.groups())
    return height, vcom == 0 and vpsf == 0


def parse_view(filename):
    match = _VIEW.search(filename)
    if not match:
        raise ValueError(f"no camera view (cam_<n>) in {filename!r}")
    return int(match.group(1))


def decode_instance_map(data, where):
    """A .map PNG -> uint8 labels [H, W, 1] (first channel // 32)."""
    try:
        image = tf.io.decode_png(data).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise RuntimeError(f"{where}: not a readable instance map "
                           f"({error.message.splitlines()[0]})") from error
    return (image[..., :1] // 32).astype(np.uint8)


class Builder(tfds.core.GeneratorBasedBuilder):
    """ShapeStacks renders with instance masks, stability, height and camera view."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional: put " + ", ".join(ARCHIVES.values()) + f" (from {BASE_URL}/) into the "
        "manual_dir when this machine cannot download them; archives not found there are "
        "downloaded."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "instance_ids": tfds.features.Image(shape=(None, None, 1)),
                "stable": tfds.features.ClassLabel(names=["unstable", "stable"]),
                "height": tfds.features.Scalar(dtype=np.int32),
                "view": tfds.features.Scalar(dtype=np.int32),
                "scenario": tfds.features.Text(),
            }),
            supervised_keys=None,
            homepage="https://shapestacks.robots.ox.ac.uk/",
        )

    def _split_generators(self, dl_manager):
        paths = self._archives(dl_manager)
        split_of = {}
        for path, f in dl_manager.iter_archive(paths["meta"]):
            parts = path.replace("\\", "/").split("/")
            if len(parts) >= 3 and parts[-3:-1] == ["splits", "default"] and \
                    parts[-1].endswith(".txt"):
                split = parts[-1][:-4]
                for line in f.read().decode("utf-8").splitlines():
                    if line.strip():
                        split_of[line.strip()] = split
        if not split_of:
            raise RuntimeError(f"{paths['meta']}: no splits/default/*.txt inside")
        masks = {}
        for path, f in dl_manager.iter_archive(paths["iseg"]):
            scenario, name = _last_two(path)
            if name.endswith(".map"):
                masks[(scenario, parse_view(name))] = f.read()
        return {
            tfds_split: self._generate_examples(paths, dl_manager, split_of, masks, name)
            for tfds_split, name in SPLITS.items()
        }

    def _archives(self, dl_manager):
        """{key: path}: each archive from --manual_dir if it is there, else downloaded."""
        paths = downloads.manual_files(dl_manager, ARCHIVES)
        missing = {k: f"{BASE_URL}/{v}" for k, v in ARCHIVES.items() if k not in paths}
        if missing:
            paths.update(downloads.download(dl_manager, missing, advice=(
                f"Without network access, download {', '.join(ARCHIVES.values())} from "
                f"{BASE_URL}/ elsewhere, put them into a folder and pass it with "
                "--manual_dir=<folder>.")))
        return paths

    def _generate_examples(self, paths, dl_manager, split_of, masks, split):
        for path, f in dl_manager.iter_archive(paths["rgb"]):
            scenario, name = _last_two(path)
            if not (name.startswith("rgb-") and name.endswith(".png")):
                continue
            if split_of.get(scenario) != split:
                continue
            view = parse_view(name)
            where = f"{paths['rgb']}:{path}"
            if (scenario, view) not in masks:
                raise RuntimeError(f"{where}: no instance map for {scenario} view {view} in "
                                   f"{paths['iseg']}")
            try:
                image = tf.io.decode_png(f.read(), channels=3).numpy()
            except tf.errors.InvalidArgumentError as error:
                raise RuntimeError(f"{where}: not a readable PNG "
                                   f"({error.message.splitlines()[0]})") from error
            ids = decode_instance_map(masks[(scenario, view)], f"{paths['iseg']}:{scenario}")
            if ids.shape[:2] != image.shape[:2]:
                raise RuntimeError(f"{where}: image {image.shape} and instance map "
                                   f"{ids.shape} differ in size")
            height, stable = parse_scenario(scenario)
            yield f"{scenario}/{name}", {
                "image": image,
                "instance_ids": ids,
                "stable": int(stable),
                "height": np.int32(height),
                "view": np.int32(view),
                "scenario": scenario,
            }


def _last_two(path):
    parts = path.replace("\\", "/").split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


__all__ = ["Builder", "decode_instance_map", "parse_scenario", "parse_view"]
