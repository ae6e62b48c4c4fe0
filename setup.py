"""Installs genesis_tf (the models, training and tools) and tfds_builders (the datasets)."""
import os
import pathlib
import shutil

import setuptools
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).parent

# The experiment configs stay at the repository's top level (gin_configs/); the wheel ships
# them inside the package as genesis_tf/gin_configs/, where
# genesis_tf.gin_files.gin_configs_dir() finds them outside a checkout.
GIN_CONFIGS = "gin_configs"

INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    # TFP refuses to import without tf-keras; its `tf` extra pulls the matching one.
    "tensorflow-probability[tf]>=0.25,<0.26",
    "tf-keras>=2.21,<2.22",
    "keras>=3.10,<4",
    "tensorflow-datasets>=4.9.10,<5",
    # tfds.testing needs dill, download_and_prepare needs importlib_resources.
    "dill",
    "importlib_resources",
    "numpy>=1.26,<3",
    "absl-py>=2.1",
    "tensorboard>=2.20",  # tf.summary needs it; tensorflow 2.21 no longer pulls it in
    "gin-config>=0.5,<0.6",
    "matplotlib>=3.8",
    "pillow>=10",
    "scipy>=1.11",
]

# The gRPC client of genesis_tf.export.client; exporting itself needs TensorFlow only.
SERVING_REQUIRES = ["tensorflow-serving-api>=2.21,<2.22"]

EXTRAS_REQUIRE = {
    # The tests parse exports' warm-up files with TF Serving's own protocol buffers.
    # No scikit-learn: Keras imports it in every process where it is installed (0.8 s).
    # torch: the tests compare layers with torch.nn and build reference checkpoints. Pinned
    # to 2.13.0, which this project's machines install as a CPU build from a local wheel;
    # a looser spec lets pip fetch the default multi-GB CUDA build from PyPI.
    # pytest-xdist: `make test` runs the suite in two worker processes.
    "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff>=0.6",
             "torch==2.13.0", *SERVING_REQUIRES],
    "serving": SERVING_REQUIRES,
    # Only for reading the authors' PyTorch checkpoints (genesis_tf.tools.convert_reference,
    # which says so when it is missing); genesis_tf imports it nowhere else.
    "torch": ["torch>=2.0"],
    "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
}


def _package_data(package):
    """Every non-Python file under a package (dummy_data/, checksums.tsv, READMEs)."""
    root = HERE / package
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]


class BuildPyWithGinConfigs(build_py):
    """build_py that also copies the top-level gin_configs/ to genesis_tf/gin_configs/.

    An editable install imports genesis_tf from the checkout and reads the checkout's
    gin_configs/ directly (gin_configs_dir() prefers it), so nothing is copied there.
    """

    def _gin_config_files(self):
        """(source, target) for every .gin file; none for an editable install."""
        if getattr(self, "editable_mode", False):
            return []
        source_root = HERE / GIN_CONFIGS
        if not source_root.is_dir():
            raise FileNotFoundError(f"{source_root} is missing (MANIFEST.in grafts it)")
        target_root = pathlib.Path(self.build_lib, "genesis_tf", GIN_CONFIGS)
        return [
            (str(p), str(target_root / p.relative_to(source_root)))
            for p in sorted(source_root.rglob("*.gin"))
        ]

    def run(self):
        super().run()
        files = self._gin_config_files()
        if files and not self.dry_run:
            # Start clean: a .gin file deleted from the tree must leave the next wheel too.
            shutil.rmtree(os.path.join(self.build_lib, "genesis_tf", GIN_CONFIGS),
                          ignore_errors=True)
        for source, target in files:
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [t for _, t in self._gin_config_files()]


setuptools.setup(
    name="genesis_tf",
    version="0.1.0",
    description=(
        "GENESIS, GENESIS-S, MONet and VAE baselines for object-centric scene "
        "generation and decomposition in TensorFlow 2 / Keras 3 / TF-Probability."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(
        include=["genesis_tf", "genesis_tf.*", "tfds_builders", "tfds_builders.*"]
    ),
    package_data={
        "tfds_builders": _package_data("tfds_builders"),
        "genesis_tf": _package_data("genesis_tf"),
    },
    include_package_data=True,
    cmdclass={"build_py": BuildPyWithGinConfigs},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "genesis-train=genesis_tf.train:run",
            "genesis-demo=genesis_tf.demo:run",
            "genesis-build-dataset=genesis_tf.tools.build_dataset:run",
            "genesis-convert-reference=genesis_tf.tools.convert_reference:run",
            "genesis-write-weights=genesis_tf.tools.write_weights:run",
            "genesis-export=genesis_tf.export.__main__:run",
            "genesis-evaluate=genesis_tf.evaluate:run",
            "genesis-visualise=genesis_tf.visualise:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
