"""Builds the project's TFDS datasets: `tfds build` without apache-beam.

    python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites \
        --config=offline_colored --data_dir=~/tensorflow_datasets
    genesis-build-dataset build multi_dsprites --config=colored --manual_dir=~/downloads

Takes the flags of `tfds build` (--config, --data_dir, --manual_dir, --download_dir,
--overwrite, --max_examples_per_split, --register_checksums, ...). The `tfds` command itself
imports apache-beam (and mlcroissant) at start-up, so it fails unless those are installed;
this entry point runs the same `build` sub-command directly. A dataset may be given as a
builder folder (tfds_builders/<name>) or by name; the builders register via --imports.
"""
import sys

from absl import app

BUILDERS_PACKAGE = "tfds_builders"
USAGE = (
    "usage: python -m genesis_tf.build_dataset build <dataset> [--config=NAME] "
    "[--data_dir=DIR] [--manual_dir=DIR] [other `tfds build` flags]\n"
    "datasets: multi_dsprites, gqn_rooms_ring_camera, shapestacks (or tfds_builders/<name>)"
)


def _normalise(argv):
    """['prog', 'build', 'tfds_builders/x', ...] -> ['prog', 'x', '--imports=...', ...]."""
    args = list(argv[1:])
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if args else 2)
    if args[0] != "build":
        print(f"error: unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    out = []
    for arg in args[1:]:
        if not arg.startswith("-"):
            arg = arg.rstrip("/")
            if "/" in arg and arg.split("/")[-2] == BUILDERS_PACKAGE:
                arg = arg.split("/")[-1]
        out.append(arg)
    if not any(a.startswith("--imports") for a in out):
        out.append(f"--imports={BUILDERS_PACKAGE}")
    return [argv[0]] + out


def _parse(argv):
    from tensorflow_datasets.scripts.cli import build, cli_utils

    parser = cli_utils.make_flags_parser(build.Args, "Build a genesis_tf dataset.")
    return parser(_normalise(argv))


def main(args):
    args.execute()


def run():
    """Console-script entry point (genesis-build-dataset)."""
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
