"""MIT-Princeton APC 2016 "Object Segmentation Training Dataset" for GENESIS-V2.

Source: ``training.zip`` (about 130 GB) from the team's site (http://apc.cs.princeton.edu),
taken from --manual_dir when it is there, else downloaded. Its layout:
  training/<place>/<object>/scene-<n>/frame-<n>.color.png        RGB frames (plus depth etc.)
  training/<place>/<object>/scene-<n>/masks/frame-<n>.mask.png   foreground mask (0 / 255)
  training/<place>/<object>/scene-empty/frame-<n>.color.png      no masks: nothing in view
with <place> shelf or tote. The zip is read through one file object (zipfile's central
directory gives random access), never extracted.

Preparation as the GENESIS reference's (datasets/apc_config.py): the shorter side resized
to 128 (image bilinear, mask nearest, both with PIL), then the centre 128×128 crop; a mask
pixel is foreground iff it is 255 (the reference divides by 255 and truncates). Splits by
scene: the sorted scene folders shuffled with ``random.seed(0)``, the first
``len // 10`` validation, the next ``len // 10`` test, the rest train. Sorting the
``<place>/<object>/<scene>`` paths orders them as the reference's full paths (one common
prefix), and the shuffle depends on the length only, so the split is the reference's.
"""
import io
import random
import re
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads

URL = "http://3dvision.princeton.edu/projects/2016/apc/downloads/training.zip"
ARCHIVE = "training.zip"
IMAGE_SIZE = 128
SPLIT_SEED = 0
# Optional leading folders, then training/<place>/<object>/<scene>/<file>.
_FRAME = re.compile(
    r"(?:^|/)training/([^/]+)/([^/]+)/(scene-[^/]+)/(frame-[^/]+)\.color\.png$")
_SCENE = re.compile(r"(?:^|/)training/([^/]+)/([^/]+)/(scene-[^/]+)/")


def split_scenes(scenes):
    """{'train', 'validation', 'test': [scene, ...]} by the reference's rule (see above)."""
    shuffled = sorted(scenes)
    # The reference calls random.seed(0); random.shuffle(): a generator of our own seeded
    # alike draws the same permutation and leaves the global one alone.
    random.Random(SPLIT_SEED).shuffle(shuffled)
    num_eval = len(shuffled) // 10
    return {
        "validation": shuffled[:num_eval],
        "test": shuffled[num_eval:2 * num_eval],
        "train": shuffled[2 * num_eval:],
    }


def resize_and_crop(image, resample, size=IMAGE_SIZE):
    """A PIL image -> its shorter side resized to `size`, then the centre size×size crop.

    Sizes and offsets follow torchvision's Resize(int) and CenterCrop as the reference
    used them: the longer side int(size * long / short), offsets round((side - size) / 2).
    """
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    image = image.resize(new_size, resample)
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def prepare_frame(color_png, mask_png=None, size=IMAGE_SIZE):
    """PNG bytes -> (image uint8 [S, S, 3], mask uint8 [S, S, 1] of 0/1; zeros if None)."""
    from PIL import Image

    with Image.open(io.BytesIO(color_png)) as color:
        image = np.asarray(resize_and_crop(color.convert("RGB"), Image.BILINEAR, size))
    mask = np.zeros((size, size, 1), np.uint8)
    if mask_png is not None:
        with Image.open(io.BytesIO(mask_png)) as raw:
            small = np.asarray(resize_and_crop(raw.convert("L"), Image.NEAREST, size))
        mask[..., 0] = small == 255
    return image, mask


def scan(names):
    """Zip member names -> (sorted scene paths '<place>/<object>/<scene>', {scene: [(frame,
    member name)]})."""
    scenes, frames = set(), {}
    for name in names:
        match = _SCENE.search(name)
        if match:
            scenes.add("/".join(match.groups()))
        match = _FRAME.search(name)
        if match:
            place, obj, scene, frame = match.groups()
            frames.setdefault(f"{place}/{obj}/{scene}", []).append((frame, name))
    return sorted(scenes), {k: sorted(v) for k, v in frames.items()}


class Builder(tfds.core.GeneratorBasedBuilder):
    """APC 2016 shelf and tote frames at 128×128 with 0/1 foreground masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Optional: put {ARCHIVE} (from {URL}, about 130 GB) into the manual_dir when this "
        "machine cannot download it; without it there, it is downloaded."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "mask": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                "scene": tfds.features.Text(),
                "object": tfds.features.Text(),
                "place": tfds.features.Text(),
            }),
            supervised_keys=None,
            homepage="http://apc.cs.princeton.edu/",
        )

    def _split_generators(self, dl_manager):
        path = self._archive(dl_manager)
        with tf.io.gfile.GFile(path, "rb") as f, zipfile.ZipFile(f) as archive:
            scenes, frames = scan(archive.namelist())
        if not frames:
            raise RuntimeError(f"{path}: no training/<place>/<object>/scene-*/frame-*.color.png "
                               f"inside; is it APC's {ARCHIVE}?")
        return {split: self._generate_examples(path, chosen, frames)
                for split, chosen in split_scenes(scenes).items()}

    def _archive(self, dl_manager):
        found = downloads.manual_files(dl_manager, {"zip": ARCHIVE})
        if found:
            return found["zip"]
        return downloads.download(dl_manager, {"zip": URL}, advice=(
            f"Without network access, download {URL} elsewhere, put {ARCHIVE} into a "
            "folder and pass it with --manual_dir=<folder>."))["zip"]

    def _generate_examples(self, path, scenes, frames):
        with tf.io.gfile.GFile(path, "rb") as f, zipfile.ZipFile(f) as archive:
            members = set(archive.namelist())
            for scene_path in scenes:
                place, obj, scene = scene_path.split("/")
                for frame, name in frames.get(scene_path, []):
                    mask_name = f"{name.rsplit('/', 1)[0]}/masks/{frame}.mask.png"
                    if mask_name in members:
                        mask_png = archive.read(mask_name)
                    elif scene == "scene-empty":
                        mask_png = None
                    else:
                        raise RuntimeError(f"{path}: no {mask_name} for {name}")
                    try:
                        image, mask = prepare_frame(archive.read(name), mask_png)
                    except (OSError, ValueError) as error:  # PIL: not a readable PNG
                        raise RuntimeError(f"{path}:{name}: cannot read the frame or its "
                                           f"mask ({error})") from error
                    yield f"{scene_path}/{frame}", {
                        "image": image, "mask": mask,
                        "scene": scene, "object": obj, "place": place,
                    }


__all__ = ["Builder", "prepare_frame", "resize_and_crop", "scan", "split_scenes"]
