"""Pictures of decompositions and generations, as NumPy arrays and PNG files.

Grids have one row per scene: for a decomposition
``input | reconstruction | segmentation | m_1·x_1 | … | m_K·x_K``, for a generation
``scene | segmentation | m_1·x_1 | … | m_K·x_K`` (component-wise, as the GENESIS paper's
figures). Segmentations colour each pixel by the slot with the largest mask.
"""
import numpy as np

# Distinct colours for up to 12 slots (more repeat).
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [170, 110, 40],
], np.float32) / 255.0


def segmentation_colours(log_masks):
    """log masks [B, K, H, W, 1] -> colour-coded argmax [B, H, W, 3] in [0, 1]."""
    ids = np.argmax(np.asarray(log_masks)[..., 0], axis=1)
    return PALETTE[ids % len(PALETTE)]


def masked_components(log_masks, components):
    """m_k · x_k for every slot: [B, K, H, W, 3]."""
    return np.exp(np.asarray(log_masks)) * np.asarray(components)


def _grid(rows, pad=2):
    """rows: list (per scene) of lists of [H, W, 3] tiles -> one image with white gutters."""
    tiles = max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    grid = np.ones((len(rows) * (h + pad) + pad, tiles * (w + pad) + pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = np.clip(tile, 0.0, 1.0)
    return grid


def decomposition_grid(images, out, max_rows=8):
    """Inputs, reconstructions, segmentations and per-slot m_k·x_k of a forward pass."""
    images = np.asarray(images)[:max_rows]
    recon = np.asarray(out.recon)[:max_rows]
    seg = segmentation_colours(np.asarray(out.log_masks)[:max_rows])
    parts = masked_components(np.asarray(out.log_masks)[:max_rows],
                              np.asarray(out.components)[:max_rows])
    rows = [[images[i], recon[i], seg[i], *parts[i]] for i in range(len(images))]
    return _grid(rows)


def generation_grid(samples, max_rows=8):
    """Generated scenes, their segmentations and their components, slot by slot."""
    recon = np.asarray(samples.recon)[:max_rows]
    seg = segmentation_colours(np.asarray(samples.log_masks)[:max_rows])
    parts = masked_components(np.asarray(samples.log_masks)[:max_rows],
                              np.asarray(samples.components)[:max_rows])
    rows = [[recon[i], seg[i], *parts[i]] for i in range(len(recon))]
    return _grid(rows)


def to_uint8(image):
    return (np.clip(np.asarray(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(image, path, scale=2):
    """Writes a float [H, W, 3] image in [0, 1] as PNG, enlarged `scale` times."""
    from PIL import Image

    picture = Image.fromarray(to_uint8(image))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    picture.save(path)
    return path


MODEL_NAMES = {"Genesis": "GENESIS", "GenesisS": "GENESIS-S", "MONet": "MONet",
               "BDVAE": "BD-VAE", "DCVAE": "DC-VAE"}
FIGURES = ("decomposition", "generation", "samples", "traversal")


def main(argv=None):
    """python -m genesis_tf.visualise --model_dir=DIR --what=decomposition --out=FILE.png

    Labelled figures of a trained run (any model type): decomposition (GENESIS Fig. 4,
    MONet Fig. 3: input, reconstruction, segmentation, each slot's m·x and mask, per-image
    foreground ARI when the dataset has instance masks), generation (GENESIS Fig. 3:
    scenes from the prior built slot by slot), samples (a grid of generated scenes) or
    traversal (MONet Fig. 5: one slot of the first test image, its most active latent
    dimensions varied one per row around the posterior mean).
    Exit codes: 0 written, 2 no run or checkpoint, a dataset not prepared.
    """
    import argparse
    import sys

    from genesis_tf import cli

    parser = argparse.ArgumentParser(prog="python -m genesis_tf.visualise",
                                     description=main.__doc__.splitlines()[2].strip())
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--what", choices=FIGURES, required=True)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--num_slots", type=int, default=None, help="K (default: as trained)")
    parser.add_argument("--slot", type=int, default=None,
                        help="traversal: slot to vary, 1..K (default: the largest after "
                        "the background)")
    parser.add_argument("--dims", type=int, default=3,
                        help="traversal: dimensions per latent group")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--dataset", default=None, help="default: the run's")
    parser.add_argument("--data_dir", default=None, help="default: the run's")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num_images must be >= 1")
    if args.dims < 1:
        parser.error("--dims must be >= 1")
    if args.slot is not None and args.slot < 1:
        parser.error("--slot counts from 1")
    cli.quiet_logging(False)

    from genesis_tf import data as data_lib
    from genesis_tf import figures, runs
    from genesis_tf.runs import CheckpointMismatchError

    try:
        model, _, state = runs.restore_with_state(args.model_dir, args.checkpoint)
        step = state.get("step", 0)
        name = f"{MODEL_NAMES.get(type(model).__name__, type(model).__name__)} (step {step})"
        if args.what in ("decomposition", "traversal"):
            run_info = runs.read_run_info(args.model_dir)
            dataset = args.dataset or run_info["dataset"]
            data_dir = args.data_dir or run_info["data_dir"]
            if dataset is None:
                raise FileNotFoundError(f"{args.model_dir} records no dataset; pass "
                                        "--dataset")
            data_lib.check_available(dataset, data_dir)
            batch = next(iter(data_lib.eval_dataset(dataset, model.image_size,
                                                    args.num_images, split=args.split,
                                                    data_dir=data_dir)))
            if args.what == "traversal":
                from genesis_tf import traversal

                if args.slot is not None and args.slot > model.num_slots:
                    print(f"error: --slot={args.slot}: the model has {model.num_slots} "
                          f"slot(s), numbered 1..{model.num_slots}", file=sys.stderr)
                    return 2
                result = traversal.traverse(
                    model, batch["image"].numpy(), dims_per_group=args.dims,
                    slot=None if args.slot is None else args.slot - 1)
                figure = figures.traversal_figure(
                    result, title=f"{name}: traversing slot {result.slot + 1} of a "
                    f"{dataset} {args.split} image")
                return _write(figure, args.out)
            out = model(batch["image"], training=False, num_slots=args.num_slots,
                        seed=args.seed)
            aris = None
            if "instance_ids" in batch:
                from genesis_tf.metrics import foreground_ari, predicted_segmentation

                _, aris = foreground_ari(batch["instance_ids"].numpy(),
                                         predicted_segmentation(out))
            figure = figures.decomposition_figure(
                batch["image"].numpy(), out, aris=aris, max_rows=args.num_images,
                title=f"{name} decomposing {dataset} {args.split} images")
        else:
            samples = model.sample(batch_size=args.num_images, seed=args.seed,
                                   num_slots=args.num_slots)
            figure = (figures.generation_figure(
                samples, max_rows=args.num_images,
                title=f"{name} generating scenes slot by slot")
                if args.what == "generation" else figures.samples_figure(
                    samples, title=f"{name}: samples from the prior"))
    except (FileNotFoundError, CheckpointMismatchError, data_lib.DatasetNotPreparedError,
            data_lib.UnknownDatasetError) as error:
        print(f"error: {cli.one_line(error)}", file=sys.stderr)
        return 2
    return _write(figure, args.out)


def _write(figure, path):
    import os

    from genesis_tf import figures

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"Wrote {figures.save_figure(figure, path)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
