"""Sketchy (Cabi et al. 2019) for GENESIS-V2: 128×128 crops of the two front cameras.

Source (google-deepmind/deepmind-research ``sketchy/``, README and download.sh): a
``metadata.sqlite`` and ``.tar.bz2`` archives of *episode files*. An episode file (named
like ``10000313341320364033_b615a417-ce34-41a8-8411-2a1ce3f3bd07``) is a TFRecord file with
one ``tf.train.Example`` per 10 Hz time step: JPEG strings ``pixels/basket_front_left``,
``pixels/basket_front_right``, ``pixels/basket_back_left`` (600×960×3), ``pixels/usbcam0/1``
(768×1024×3), ``pixels/royale_camera_driver_gray``, a float depth map and float/int
proprioception (PROPRIOCEPTION below). Named subsets are tags in ``metadata.sqlite``
(table EpisodeTags); table ArchiveFiles says which archive holds each episode.

Preparation as the GENESIS reference does it: episodes sorted by name, the first 10 % are
validation, the next 10 % test, the rest train (so no episode spans two splits); every
time step's front-left and front-right frame is cropped to 448×672 (rows 71:-81 and
91:-61, columns 144:-144) and gives seven 128×128 images, bilinear (PIL): the central
448×448 square ("full") and six 352×352 crops at rows {0, -352} × columns {0, centre,
-352}. One example per image, with the step's proprioception. The other cameras and the
depth map are not kept.

Configs: ``lift_green``, ``stack_green_on_red`` and ``paper`` (both, as GENESIS-V2 uses
them) select episodes by tag; ``manual`` takes every episode file in --manual_dir (loose or
inside .tar.bz2 archives) with no metadata. Archives are streamed, never extracted.
"""
import collections
import dataclasses
import io
import logging
import os
import pathlib
import sqlite3
import struct

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import downloads

# download.sh's DATA_URL; archives are <group>-<index:05d>-of-<count:05d>.tar.bz2.
DATA_URL = "https://storage.cloud.google.com/sketchy-data"
METADATA = "metadata.sqlite"
ARCHIVE_SUFFIX = ".tar.bz2"
# Archive groups of download.sh (name -> number of archives) for the GENESIS-V2 subsets.
ARCHIVE_GROUPS = {
    "lift_green__demos": 2,
    "lift_green__episodes": 70,
    "stack_green_on_red__demos": 2,
    "stack_green_on_red__episodes": 101,
}
SUBSET_TAGS = {
    "lift_green": ("lift_green__demos", "lift_green__episodes"),
    "stack_green_on_red": ("stack_green_on_red__demos", "stack_green_on_red__episodes"),
}
SUBSET_TAGS["paper"] = SUBSET_TAGS["lift_green"] + SUBSET_TAGS["stack_green_on_red"]

# Proprioception of sketchy.py's feature list: name -> (length, dtype).
PROPRIOCEPTION = {
    "actions": (7, np.float32),
    "gripper/joints/velocity": (1, np.float32),
    "gripper/joints/torque": (1, np.float32),
    "gripper/grasp": (1, np.int64),
    "gripper/joints/angle": (1, np.float32),
    "sawyer/joints/velocity": (7, np.float32),
    "sawyer/pinch/pose": (7, np.float32),
    "sawyer/tcp/pose": (7, np.float32),
    "sawyer/tcp/effort": (6, np.float32),
    "sawyer/joints/torque": (7, np.float32),
    "sawyer/tcp/velocity": (6, np.float32),
    "sawyer/joints/angle": (7, np.float32),
    "wrist/torque": (3, np.float32),
    "wrist/force": (3, np.float32),
}
FRAME_SHAPE = (600, 960)
# camera -> (its JPEG feature, rows kept): 448 rows × columns 144:-144 (672) of 600×960.
CAMERAS = {
    "front_left": ("pixels/basket_front_left", (71, -81)),
    "front_right": ("pixels/basket_front_right", (91, -61)),
}
COLUMNS = (144, -144)
IMAGE_SIZE = 128
CROP_SIZE = 352
# crop name -> (row offset, column offset) in the 448×672 window; None = the central square.
CROPS = {
    "full": None,
    "top_left": (0, 0),
    "top_centre": (0, "centre"),
    "top_right": (0, -CROP_SIZE),
    "bottom_left": (-CROP_SIZE, 0),
    "bottom_centre": (-CROP_SIZE, "centre"),
    "bottom_right": (-CROP_SIZE, -CROP_SIZE),
}
SPLITS = ("validation", "test", "train")


def feature_key(name):
    """'sawyer/joints/angle' -> 'sawyer_joints_angle' ('/' separates nested TFDS features)."""
    return name.replace("/", "_")


def crop_frame(frame, camera):
    """A 600×960×3 front-camera frame -> its 448×672×3 window."""
    if frame.shape[:2] != FRAME_SHAPE:
        raise ValueError(f"{camera} frame is {frame.shape}, expected {FRAME_SHAPE + (3,)}")
    (top, bottom), (left, right) = CAMERAS[camera][1], COLUMNS
    return frame[top:bottom, left:right]


def square_crops(window):
    """448×672×3 window -> {crop name: 128×128×3 uint8}, each resized bilinear by PIL."""
    height, width = window.shape[:2]
    out = {}
    for name, offsets in CROPS.items():
        if offsets is None:  # the central height×height square
            left = (width - height) // 2
            square = window[:, left:left + height]
        else:
            top = offsets[0] % height
            left = (width - CROP_SIZE) // 2 if offsets[1] == "centre" else offsets[1] % width
            square = window[top:top + CROP_SIZE, left:left + CROP_SIZE]
        image = Image.fromarray(np.ascontiguousarray(square))
        out[name] = np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
    return out


def split_episodes(names):
    """{split: sorted episode names}: sorted by name, first 10 % validation, next 10 % test,
    the rest train (10 % rounded down, so with fewer than ten episodes validation and test
    are empty)."""
    names = sorted(set(names))
    tenth = len(names) // 10
    return {
        "validation": names[:tenth],
        "test": names[tenth:2 * tenth],
        "train": names[2 * tenth:],
    }


def read_records(fileobj, where):
    """The records of a TFRecord stream (CRCs are not checked; framing errors raise)."""
    while True:
        header = fileobj.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RuntimeError(f"{where}: truncated TFRecord (not an episode file?)")
        (length,) = struct.unpack("<Q", header[:8])
        data = fileobj.read(length)
        if len(data) < length or len(fileobj.read(4)) < 4:
            raise RuntimeError(f"{where}: truncated TFRecord (not an episode file?)")
        yield data


def step_examples(record, episode, step, where):
    """One time step's tf.train.Example bytes -> {(camera, crop): example dict}."""
    try:
        features = tf.train.Example.FromString(record).features.feature
    except Exception as error:  # protobuf DecodeError
        raise RuntimeError(f"{where}: step {step} is not a tf.train.Example") from error
    common = {"episode": episode, "step": np.int32(step)}
    for name, (length, dtype) in PROPRIOCEPTION.items():
        if name not in features:
            raise RuntimeError(f"{where}: step {step} has no feature {name!r}")
        feature = features[name]
        values = feature.int64_list.value if dtype == np.int64 else feature.float_list.value
        if len(values) != length:
            raise RuntimeError(f"{where}: step {step}: {name} has {len(values)} values, "
                               f"expected {length}")
        common[feature_key(name)] = np.asarray(values, dtype)
    out = {}
    for camera, (key, _) in CAMERAS.items():
        if key not in features or not features[key].bytes_list.value:
            raise RuntimeError(f"{where}: step {step} has no JPEG {key!r}")
        try:
            frame = np.asarray(Image.open(io.BytesIO(features[key].bytes_list.value[0]))
                               .convert("RGB"))
        except Exception as error:  # PIL.UnidentifiedImageError, truncated data
            raise RuntimeError(f"{where}: step {step}: {key} is not a readable JPEG") \
                from error
        try:
            crops = square_crops(crop_frame(frame, camera))
        except ValueError as error:
            raise RuntimeError(f"{where}: step {step}: {error}") from error
        for crop, image in crops.items():
            out[(camera, crop)] = dict(common, image=image, camera=camera, crop=crop)
    return out


@dataclasses.dataclass
class Sources:
    """Where the episodes are: loose episode files and archives (with their episodes)."""
    files: dict  # episode -> path
    archives: dict  # archive path -> set of episodes wanted from it (None: any)


def select_episodes(metadata_path, tags):
    """{episode file name: archive file name or None} of the episodes with any of ``tags``."""
    # Read-only, so a wrong path raises instead of creating an empty database.
    uri = pathlib.Path(os.path.abspath(metadata_path)).as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute(
                "SELECT DISTINCT Episodes.DataPath, ArchiveFiles.ArchiveFile FROM Episodes "
                "JOIN EpisodeTags ON Episodes.EpisodeId = EpisodeTags.EpisodeId "
                "LEFT JOIN ArchiveFiles ON Episodes.EpisodeId = ArchiveFiles.EpisodeId "
                f"WHERE EpisodeTags.Tag IN ({','.join('?' * len(tags))})",
                tuple(tags)).fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise RuntimeError(f"{metadata_path}: not Sketchy's metadata.sqlite ({error})") \
            from error
    return {os.path.basename(path): archive and os.path.basename(archive)
            for path, archive in rows}


def archive_urls(names):
    return {name: f"{DATA_URL}/{name}" for name in sorted(names)}


def group_archives(group):
    count = ARCHIVE_GROUPS[group]
    return [f"{group}-{i:05d}-of-{count:05d}{ARCHIVE_SUFFIX}" for i in range(count)]


def _loose_files(folder):
    """{basename: path} of every file below ``folder`` that is not an archive or metadata."""
    found = {}
    for root, _, names in tf.io.gfile.walk(folder):
        for name in names:
            if name.endswith(ARCHIVE_SUFFIX) or name == METADATA or name.startswith("."):
                continue
            found.setdefault(name, os.path.join(root, name))
    return found


def _local_archives(folder):
    if folder is None:
        return {}
    return {name: os.path.join(folder, name) for name in tf.io.gfile.listdir(folder)
            if name.endswith(ARCHIVE_SUFFIX)}


class Builder(tfds.core.GeneratorBasedBuilder):
    """Sketchy front-camera crops (128×128) with proprioception, split by episode."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="paper", description=(
            "lift_green and stack_green_on_red together, as GENESIS-V2 trains on them.")),
        tfds.core.BuilderConfig(name="lift_green", description=(
            "Episodes tagged lift_green__demos or lift_green__episodes.")),
        tfds.core.BuilderConfig(name="stack_green_on_red", description=(
            "Episodes tagged stack_green_on_red__demos or stack_green_on_red__episodes.")),
        tfds.core.BuilderConfig(name="manual", description=(
            "Every episode file in --manual_dir (loose or in .tar.bz2 archives); no "
            "metadata.")),
    ]
    DEFAULT_CONFIG_NAME = "paper"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Config manual: put episode files (or Sketchy .tar.bz2 archives) into the "
        f"manual_dir. Named subsets: optional; put {METADATA} and the subset's archives "
        f"(from {DATA_URL}/, see deepmind-research sketchy/download.sh) or extracted episode "
        "files there when this machine cannot download them; what is missing is downloaded."
    )

    def _info(self):
        proprioception = {
            feature_key(name): tfds.features.Tensor(shape=(length,), dtype=dtype)
            for name, (length, dtype) in PROPRIOCEPTION.items()
        }
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "episode": tfds.features.Text(),
                "step": tfds.features.Scalar(dtype=np.int32),
                "camera": tfds.features.ClassLabel(names=list(CAMERAS)),
                "crop": tfds.features.ClassLabel(names=list(CROPS)),
                **proprioception,
            }),
            supervised_keys=None,
            homepage="https://github.com/google-deepmind/deepmind-research/tree/master/sketchy",
        )

    def _split_generators(self, dl_manager):
        if self.builder_config.name == "manual":
            sources = self._manual_sources(dl_manager)
        else:
            sources = self._subset_sources(dl_manager, SUBSET_TAGS[self.builder_config.name])
        episodes = set(sources.files)
        for wanted in sources.archives.values():
            episodes |= wanted
        splits = split_episodes(episodes)
        empty = [name for name in SPLITS if not splits[name]]
        if empty:
            logging.warning(
                "sketchy/%s: %d episodes; the split rule (sorted by name, first 10 %% "
                "validation, next 10 %% test) leaves %s empty, so it is not written.",
                self.builder_config.name, len(episodes), " and ".join(empty))
        return {name: self._generate_examples(sources, set(splits[name]), dl_manager)
                for name in SPLITS if splits[name]}

    def _manual_sources(self, dl_manager):
        folder = downloads.manual_dir(dl_manager)
        if folder is None:
            raise RuntimeError(
                "sketchy/manual reads episode files from --manual_dir, and "
                f"{downloads.configured_manual_dir(dl_manager) or 'no folder'} has none: "
                "pass --manual_dir=<folder with episode files or .tar.bz2 archives>.")
        archives = {}
        for path in _local_archives(folder).values():  # a listing pass: bz2 has no index
            archives[path] = {os.path.basename(member) for member, _ in
                              dl_manager.iter_archive(path) if not member.endswith("/")}
        files = _loose_files(folder)
        if not files and not any(archives.values()):
            raise RuntimeError(f"sketchy/manual: no episode files in {folder} "
                               "(--manual_dir)")
        return Sources(files=files, archives=archives)

    def _subset_sources(self, dl_manager, tags):
        folder = downloads.manual_dir(dl_manager)
        metadata = os.path.join(folder, METADATA) if folder else None
        if metadata is None or not tf.io.gfile.exists(metadata):
            metadata = self._download(dl_manager, {METADATA: f"{DATA_URL}/{METADATA}"},
                                      [METADATA])[METADATA]
        wanted = select_episodes(metadata, tags)
        if not wanted:
            raise RuntimeError(f"{metadata}: no episode is tagged {' or '.join(tags)}")
        loose = _loose_files(folder) if folder else {}
        files = {name: loose[name] for name in wanted if name in loose}
        missing = {name: archive for name, archive in wanted.items() if name not in files}
        needed = collections.defaultdict(set)
        for name, archive in missing.items():
            if archive:
                needed[archive].add(name)
            else:  # not in ArchiveFiles: look in every archive of the subset's groups
                for group in tags:
                    for archive_name in group_archives(group):
                        needed[archive_name].add(name)
        local = _local_archives(folder)
        paths = {name: local[name] for name in needed if name in local}
        absent = sorted(set(needed) - set(paths))
        if absent:
            paths.update(self._download(dl_manager, archive_urls(absent), absent))
        return Sources(files=files, archives={paths[a]: names for a, names in needed.items()})

    @staticmethod
    def _download(dl_manager, urls, names):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return downloads.download(dl_manager, urls, advice=(
            f"Without network access, download {shown} from {DATA_URL}/ elsewhere (see "
            "deepmind-research sketchy/download.sh), put them (or the extracted episode "
            "files) into a folder and pass it with --manual_dir=<folder>."))

    def _generate_examples(self, sources, episodes, dl_manager):
        found = set()
        for episode in sorted(episodes & set(sources.files)):
            path = sources.files[episode]
            with tf.io.gfile.GFile(path, "rb") as f:
                yield from self._episode_examples(f, episode, path)
            found.add(episode)
        for archive, in_archive in sources.archives.items():
            if in_archive is not None and not (in_archive & episodes - found):
                continue
            for member, f in dl_manager.iter_archive(archive):
                episode = os.path.basename(member)
                if episode in episodes and episode not in found:
                    yield from self._episode_examples(f, episode, f"{archive}:{member}")
                    found.add(episode)
        if episodes - found:
            lost = sorted(episodes - found)
            raise RuntimeError(
                f"{len(lost)} episodes not found in their archives or --manual_dir "
                f"(e.g. {lost[0]}); the archives: {', '.join(sorted(sources.archives))}")

    @staticmethod
    def _episode_examples(fileobj, episode, where):
        for step, record in enumerate(read_records(fileobj, where)):
            for (camera, crop), example in step_examples(record, episode, step,
                                                         where).items():
                yield f"{episode}/{step}/{camera}/{crop}", example


__all__ = ["Builder", "crop_frame", "select_episodes", "split_episodes", "square_crops",
           "step_examples"]
