"""Writes dummy_data/: Sketchy's metadata.sqlite (the real schema, deepmind-research
sketchy/metadata_schema.py), three .tar.bz2 archives named as download.sh names them and one
loose (extracted) episode file; every time step is a tf.train.Example with sketchy.py's
full feature list at the real shapes (run once; the output is committed).

Episodes (name = <EpisodeId>_<uuid>, sorted by name as below):
  6 × 1 step  tag lift_green__demos            in lift_green__demos-00000-of-00002.tar.bz2
  1 × 2 steps tag lift_green__episodes         loose file (its archive is not here)
  4 × 1 step  tag stack_green_on_red__demos    in stack_green_on_red__demos-00000-of-00002...
  1 × 1 step  tag rgb30__all (in no subset)    in rgb30__all-00000-of-00205.tar.bz2
"""
import io
import os
import sqlite3
import tarfile
import uuid

import numpy as np
import tensorflow as tf
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dummy_data")
LOOSE = "lift_green__episodes-00003-of-00070.tar.bz2"
# (tag, archive file, number of episodes, steps per episode, in the archive?)
GROUPS = [
    ("lift_green__demos", "lift_green__demos-00000-of-00002.tar.bz2", 6, 1, True),
    ("lift_green__episodes", LOOSE, 1, 2, False),
    ("stack_green_on_red__demos", "stack_green_on_red__demos-00000-of-00002.tar.bz2", 4, 1,
     True),
    ("rgb30__all", "rgb30__all-00000-of-00205.tar.bz2", 1, 1, True),
]
# The real schema (SQLAlchemy's DDL for metadata_schema.py).
SCHEMA = """
CREATE TABLE "Episodes" ("EpisodeId" VARCHAR NOT NULL, "TaskId" VARCHAR, "DataPath" VARCHAR,
  "Timestamp" INTEGER, "EpisodeType" VARCHAR, PRIMARY KEY ("EpisodeId"));
CREATE TABLE "Tags" ("Name" VARCHAR NOT NULL, PRIMARY KEY ("Name"));
CREATE TABLE "EpisodeTags" ("EpisodeId" VARCHAR NOT NULL, "Tag" VARCHAR NOT NULL,
  PRIMARY KEY ("EpisodeId", "Tag"), FOREIGN KEY("EpisodeId") REFERENCES "Episodes" ("EpisodeId"),
  FOREIGN KEY("Tag") REFERENCES "Tags" ("Name"));
CREATE TABLE "RewardSequences" ("EpisodeId" VARCHAR NOT NULL, "RewardSequenceId" VARCHAR NOT NULL,
  "RewardTaskId" VARCHAR, "Type" VARCHAR, "User" VARCHAR, "Values" BLOB,
  PRIMARY KEY ("EpisodeId", "RewardSequenceId"),
  FOREIGN KEY("EpisodeId") REFERENCES "Episodes" ("EpisodeId"));
CREATE TABLE "ArchiveFiles" ("EpisodeId" VARCHAR NOT NULL, "ArchiveFile" VARCHAR,
  PRIMARY KEY ("EpisodeId"), FOREIGN KEY("EpisodeId") REFERENCES "Episodes" ("EpisodeId"));
"""
FLOATS = {"actions": 7, "gripper/joints/velocity": 1, "gripper/joints/torque": 1,
          "gripper/joints/angle": 1, "sawyer/joints/velocity": 7, "sawyer/pinch/pose": 7,
          "sawyer/tcp/pose": 7, "sawyer/tcp/effort": 6, "sawyer/joints/torque": 7,
          "sawyer/tcp/velocity": 6, "sawyer/joints/angle": 7, "wrist/torque": 3,
          "wrist/force": 3}


def jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def scene(rng, height, width, channels=3):
    """A smooth background with a few coloured blocks (compresses like a photo, roughly)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(60, 180, channels)
    image = base + 40 * np.stack([np.sin(3 * x + c) * np.cos(2 * y) for c in range(channels)],
                                 -1)
    for _ in range(4):
        top, left = rng.integers(0, height - 60), rng.integers(0, width - 60)
        image[top:top + 60, left:left + 60] = rng.uniform(0, 255, channels)
    return np.clip(image, 0, 255).astype(np.uint8)


def time_step(rng):
    f = {name: tf.train.Feature(float_list=tf.train.FloatList(
        value=rng.normal(size=n).astype(np.float32))) for name, n in FLOATS.items()}
    f["gripper/grasp"] = tf.train.Feature(int64_list=tf.train.Int64List(
        value=[int(rng.integers(0, 2))]))
    for name in ("basket_front_left", "basket_front_right"):
        f[f"pixels/{name}"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[jpeg(scene(rng, 600, 960))]))
    # Cameras the builder does not read: flat grey at their real sizes (small files).
    for name, shape in (("basket_back_left", (600, 960, 3)), ("usbcam0", (768, 1024, 3)),
                        ("usbcam1", (768, 1024, 3))):
        f[f"pixels/{name}"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[jpeg(np.full(shape, 128, np.uint8))]))
    f["pixels/royale_camera_driver_gray"] = tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[jpeg(scene(rng, 171, 224, 1))]))
    f["pixels/royale_camera_driver_depth"] = tf.train.Feature(float_list=tf.train.FloatList(
        value=np.zeros(171 * 224, np.float32)))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def episode_bytes(rng, steps, path):
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(steps):
            writer.write(time_step(rng))
    with open(path, "rb") as f:
        return f.read()


def main():
    rng = np.random.default_rng(0)
    os.makedirs(OUT, exist_ok=True)
    db_path = os.path.join(OUT, "metadata.sqlite")
    if os.path.exists(db_path):
        os.remove(db_path)
    db = sqlite3.connect(db_path)
    db.executescript(SCHEMA)
    serial = 10000000000000000000
    for tag, archive, count, steps, packed in GROUPS:
        db.execute('INSERT OR IGNORE INTO "Tags" VALUES (?)', (tag,))
        members = []
        for _ in range(count):
            serial += int(rng.integers(1, 10**15))
            episode_id = str(serial)
            name = f"{episode_id}_{uuid.UUID(bytes=rng.bytes(16), version=4)}"
            db.execute('INSERT INTO "Episodes" VALUES (?, ?, ?, ?, ?)',
                       (episode_id, tag.split("__")[0], name, 1570000000 + len(members),
                        "EPISODE_ROBOT_TELEOPERATION"))
            db.execute('INSERT INTO "EpisodeTags" VALUES (?, ?)', (episode_id, tag))
            db.execute('INSERT INTO "ArchiveFiles" VALUES (?, ?)', (episode_id, archive))
            path = os.path.join(OUT, name)
            members.append((name, episode_bytes(rng, steps, path)))
            if packed:
                os.remove(path)
        if packed:
            with tarfile.open(os.path.join(OUT, archive), "w:bz2") as tar:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    db.commit()
    db.close()


if __name__ == "__main__":
    main()
