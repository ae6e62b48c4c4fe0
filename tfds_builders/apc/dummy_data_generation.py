"""Writes dummy_data/training.zip: APC's layout and file names with tiny 40×30 frames
(run once; the output is committed).

Each scene folder holds, as the real one, frame-<6 digits>.color.png (RGB),
frame-<n>.depth.png (16-bit grey, ignored by the builder), cam.info.txt and, except
scene-empty, masks/frame-<n>.mask.png (8-bit grey, 0 or 255). Eleven scenes, so the
reference's split puts one scene into validation and one into test.
"""
import io
import os
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
# place -> object -> {scene: number of frames}
SCENES = {
    "shelf": {
        "crayola_24_ct": {"scene-0000": 2, "scene-0001": 1, "scene-empty": 1},
        "dove_beauty_bar": {"scene-0000": 1, "scene-0001": 1, "scene-empty": 1},
    },
    "tote": {
        "expo_dry_erase_board_eraser": {"scene-0000": 1, "scene-0001": 2, "scene-empty": 1},
        "kleenex_tissue_box": {"scene-0000": 1, "scene-empty": 1},
    },
}
WIDTH, HEIGHT = 40, 30


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def main():
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(os.path.join(HERE, "dummy_data", "training.zip"), "w",
                         zipfile.ZIP_DEFLATED) as archive:
        for place, objects in SCENES.items():
            for obj, scenes in objects.items():
                for scene, count in scenes.items():
                    folder = f"training/{place}/{obj}/{scene}"
                    archive.writestr(f"{folder}/cam.info.txt", "dummy camera intrinsics\n")
                    for i in range(count):
                        frame = f"{folder}/frame-{i:06d}"
                        color = rng.integers(0, 8, (HEIGHT, WIDTH, 3)).astype(np.uint8)
                        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
                        if scene != "scene-empty":
                            top, left = rng.integers(2, 12), rng.integers(2, 24)
                            mask[top:top + 12, left:left + 14] = 255
                            color[mask == 255] = (200, 60, 30)  # the object is red
                            archive.writestr(f"{folder}/masks/frame-{i:06d}.mask.png", png(mask))
                        archive.writestr(f"{frame}.color.png", png(color))
                        depth = rng.integers(900, 908, (HEIGHT, WIDTH)).astype(np.uint16)
                        archive.writestr(f"{frame}.depth.png", png(depth))


if __name__ == "__main__":
    main()
