"""Builds the project's TFDS datasets: `tfds build` without apache-beam.

    python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites \
        --config=offline_colored --data_dir=~/tensorflow_datasets
    genesis-build-dataset build multi_dsprites --config=colored --manual_dir=~/downloads

(`python -m genesis_tf.tools.build_dataset` is the same; genesis_tf.build_dataset forwards
here.)
Takes the flags of `tfds build` (--config, --data_dir, --manual_dir, --download_dir,
--overwrite, --max_examples_per_split, --register_checksums, ...). The `tfds` command itself
imports apache-beam (and mlcroissant) at start-up, so it fails unless those are installed;
this entry point runs the same `build` sub-command directly. A dataset may be given as a
builder folder (tfds_builders/<name>) or by name; the builders register via --imports.

One difference from `tfds build`: without --config, --config_idx or <name>/<config>, only
the dataset's default config is built (TFDS would build every config).

Exit codes: 0 built, 2 a bad command line or an unreachable download source (one line on
stderr says which and how to fix it).
"""
import dataclasses
import importlib
import os
import shutil
import sys

from genesis_tf import cli
from genesis_tf.errors import UserError

BUILDERS_PACKAGE = "tfds_builders"
USAGE = (
    "usage: python -m genesis_tf.build_dataset build <dataset> [--config=NAME] "
    "[--data_dir=DIR] [--manual_dir=DIR] [other `tfds build` flags]\n"
    "datasets: multi_dsprites, gqn_rooms_ring_camera, shapestacks, objects_room, "
    "clevr_with_masks, dm_multi_dsprites, tetrominoes (or tfds_builders/<name>)\n"
    "Without --config only the default config is built (multi_dsprites: offline_colored, "
    "no download; gqn_rooms_ring_camera: full); run once per config to build others."
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


def default_config(name):
    """The default config of the registered dataset `name`, or None (none, or unknown)."""
    import tensorflow_datasets as tfds

    try:
        builder_cls = tfds.builder_cls(name)
    except Exception:  # pylint: disable=broad-except  (not registered: leave it to TFDS)
        return None
    if not builder_cls.BUILDER_CONFIGS:
        return None
    return builder_cls.DEFAULT_CONFIG_NAME or builder_cls.BUILDER_CONFIGS[0].name


def with_default_configs(args):
    """Args whose datasets without a config name their default config (see module doc)."""
    generation = args.generation
    if generation.config is not None or generation.config_idx is not None:
        return args
    for module in filter(None, (generation.imports or "").split(",")):
        importlib.import_module(module)  # registers the builders, as execute() does

    def with_config(dataset):
        name, sep, version = dataset.partition(":")
        if not name or "/" in name:  # default (current folder), or config already given
            return dataset
        config = default_config(name)
        if config is None:
            return dataset
        print(f"Building {name}/{config} (the default config; pass --config=NAME for "
              "another).", file=sys.stderr)
        return f"{name}/{config}{sep}{version}"

    return dataclasses.replace(
        args,
        positional_datasets=[with_config(d) for d in args.positional_datasets],
        datasets=[with_config(d) for d in args.datasets],
    )


def _parse(argv):
    from tensorflow_datasets.scripts.cli import build, cli_utils

    parser = cli_utils.make_flags_parser(build.Args, "Build a genesis_tf dataset.")
    return with_default_configs(parser(_normalise(argv)))


def main(args):
    from tfds_builders import downloads

    data_dir = os.path.expanduser(str(args.paths.data_dir or "")) or None
    existed = data_dir is None or os.path.exists(data_dir)
    try:
        args.execute()
    except BaseException as error:
        if not existed:
            _remove_failed_build(data_dir)
        if isinstance(error, downloads.NetworkUnreachableError):
            # tfds_builders does not depend on genesis_tf: its error becomes a UserError.
            raise UserError(str(error)) from None
        raise


def _remove_failed_build(top):
    """Removes what a failed build left in a --data_dir that did not exist before it: all
    of it when no dataset was finished there (TFDS leaves <name>/.config/metadata.json),
    else only the empty folders."""
    if not os.path.isdir(top):
        return
    walk = sorted(os.walk(top), key=lambda entry: -len(entry[0]))  # deepest first
    if not any("dataset_info.json" in files for _, _, files in walk):
        shutil.rmtree(top, ignore_errors=True)
        return
    for folder, _, _ in walk:
        try:
            os.rmdir(folder)  # only empty folders go
        except OSError:
            pass


def run():
    """Console-script entry point (genesis-build-dataset)."""
    cli.run_main(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
