"""Writes dummy_data/: the three ShapeStacks archives in the real layout and file-name
scheme, with tiny 32×32 renders (run once; the output is committed)."""
import io
import os
import tarfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = {
    "train": ["env_ccs-hard-h=2-vcom=0-vpsf=0-v=60", "env_blocks-easy-h=4-vcom=1-vpsf=0-v=3"],
    "eval": ["env_ccs-easy-h=3-vcom=0-vpsf=2-v=7"],
    "test": ["env_blocks-hard-h=5-vcom=0-vpsf=0-v=12"],
}
VIEWS = (1, 2)


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main():
    rng = np.random.default_rng(0)
    out = os.path.join(HERE, "dummy_data")
    with tarfile.open(os.path.join(out, "shapestacks-meta.tar.gz"), "w:gz") as tar:
        for split, names in SCENARIOS.items():
            add(tar, f"shapestacks/splits/default/{split}.txt", ("\n".join(names) + "\n").encode())
    with tarfile.open(os.path.join(out, "shapestacks-rgb.tar.gz"), "w:gz") as rgb, \
            tarfile.open(os.path.join(out, "shapestacks-iseg.tar.gz"), "w:gz") as iseg:
        for names in SCENARIOS.values():
            for scenario in names:
                height = int(scenario.split("-h=")[1].split("-")[0])
                for view in VIEWS:
                    labels = np.zeros((32, 32), np.uint8)
                    for block in range(height):
                        top = 28 - 4 * (block + 1)
                        labels[top:top + 4, 12:20] = block + 1
                    image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
                    image[labels > 0] = (labels[labels > 0, None] * 40).astype(np.uint8)
                    add(rgb, f"shapestacks/recordings/{scenario}/"
                        f"rgb-w=1-f=2-l=0-c=unique-cam_{view}-mono-0.png", png(image))
                    channels = np.stack([labels * 32, labels * 0, labels * 0], -1)
                    add(iseg, f"shapestacks/iseg/{scenario}/"
                        f"iseg-w=0-f=0-l=0-c=original-cam_{view}-mono-0.map",
                        png(channels.astype(np.uint8)))


if __name__ == "__main__":
    main()
