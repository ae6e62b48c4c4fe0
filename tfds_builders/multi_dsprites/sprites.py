"""dSprites shapes and their composition into coloured Multi-dSprites scenes (NumPy).

dSprites (Matthey et al. 2017) varies shape (square, ellipse, heart), scale (6 values in
[0.5, 1]), orientation (40 values in [0, 2π]) and position (32×32 values in [0, 1]²) of one
white sprite on a 64×64 black image. ``render`` draws such sprites itself, so the dataset can
be built offline; ``compose`` paints 1–4 sprites in order over a background, the later ones
occluding the earlier, each colour channel from 5 equally spread levels.
"""
import numpy as np

IMAGE_SIZE = 64
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
COLOUR_LEVELS = np.linspace(0.0, 1.0, 5)
MAX_OBJECTS = 4

# Sprite geometry in pixels: half-size at scale 1 and the span of sprite centres.
_HALF_SIZE = 9.0
_CENTRE_LOW, _CENTRE_HIGH = 10.0, 54.0


def render(shape, scale, orientation, x, y, size=IMAGE_SIZE):
    """Binary sprite masks [N, size, size] for arrays of N latents (dSprites semantics:
    x runs along columns, y along rows, orientation counter-clockwise in radians)."""
    shape, scale, orientation, x, y = (np.asarray(a, np.float64).reshape(-1, 1, 1)
                                       for a in (shape, scale, orientation, x, y))
    pixel = np.arange(size, dtype=np.float64) + 0.5
    cols, rows = pixel[None, None, :], pixel[None, :, None]
    cx = _CENTRE_LOW + x * (_CENTRE_HIGH - _CENTRE_LOW)
    cy = _CENTRE_LOW + y * (_CENTRE_HIGH - _CENTRE_LOW)
    half = _HALF_SIZE * scale
    dx, dy = (cols - cx) / half, (cy - rows) / half  # dy points up
    cos, sin = np.cos(orientation), np.sin(orientation)
    u = cos * dx + sin * dy  # rotate the pixel into the sprite's frame
    v = -sin * dx + cos * dy
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.85
    ellipse = u**2 + (v / 0.5) ** 2 <= 1.0
    hx, hy = u * 1.15, v * 1.15 + 0.25
    heart = (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


def sample_latents(rng, count):
    """Latent class indices, uniform over the dSprites grid: dict of int arrays [count]."""
    return {
        "shape": rng.integers(0, len(SHAPES), count),
        "scale": rng.integers(0, len(SCALES), count),
        "orientation": rng.integers(0, len(ORIENTATIONS), count),
        "x": rng.integers(0, len(POSITIONS), count),
        "y": rng.integers(0, len(POSITIONS), count),
    }


def sample_colours(rng, num_colours, unique):
    """[num_colours, 3] colours, channels from COLOUR_LEVELS; all distinct if `unique`."""
    if unique:
        codes = rng.choice(len(COLOUR_LEVELS) ** 3, size=num_colours, replace=False)
        levels = np.stack([codes // 25, (codes // 5) % 5, codes % 5], axis=-1)
    else:
        levels = rng.integers(0, len(COLOUR_LEVELS), size=(num_colours, 3))
    return COLOUR_LEVELS[levels]


def compose(masks, colours, background):
    """Paints masks [n, H, W] in order with colours [n, 3] over background [3].

    Returns (image float [H, W, 3], instance ids uint8 [H, W]: 0 background, k = the k-th
    painted sprite where it is visible)."""
    h, w = masks.shape[1:]
    image = np.broadcast_to(background, (h, w, 3)).copy()
    ids = np.zeros((h, w), np.uint8)
    for k, (mask, colour) in enumerate(zip(masks, colours, strict=True)):
        image[mask] = colour
        ids[mask] = k + 1
    return image, ids


def to_uint8(image):
    return np.round(np.asarray(image) * 255.0).astype(np.uint8)
