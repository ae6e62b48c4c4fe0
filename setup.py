"""Installs genesis_tf (the models, training and tools) and tfds_builders (the datasets)."""
import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent

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

EXTRAS_REQUIRE = {
    "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6"],
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
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "genesis-train=genesis_tf.train:run",
            "genesis-demo=genesis_tf.demo:run",
            "genesis-build-dataset=genesis_tf.build_dataset:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
