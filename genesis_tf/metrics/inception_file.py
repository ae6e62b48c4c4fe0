"""Where FID's Inception graph is, found without TensorFlow so that `genesis-evaluate
--metrics=fid` can say it is missing before the seconds of importing it (fid.py loads it).
"""
from __future__ import annotations

import os

INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
INCEPTION_FILENAME = "classify_image_graph_def.pb"
INCEPTION_ENV_VAR = "GENESIS_TF_INCEPTION"


def missing_message(where: str) -> str:
    return (
        f"Inception graph for FID not found ({where}): download {INCEPTION_URL}, "
        f"extract {INCEPTION_FILENAME} from it, and pass its path (or its folder) with "
        f"--inception_path=PATH or {INCEPTION_ENV_VAR}=PATH. Nothing is downloaded "
        "automatically."
    )


def resolve(path: str | os.PathLike | None) -> str:
    """The .pb file that `path` (the file or its folder; None or "": $GENESIS_TF_INCEPTION)
    names; FileNotFoundError saying where to get it if there is none."""
    if path is None or str(path) == "":
        path = os.environ.get(INCEPTION_ENV_VAR) or None
        if path is None:
            raise FileNotFoundError(
                missing_message(f"no path given and {INCEPTION_ENV_VAR} is not set"))
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, INCEPTION_FILENAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(missing_message(f"no file at {path}"))
    return path
