"""Packaging for the DUIA ranking pipeline.

Direct dependencies are pinned here, and only here; `constraints.txt` is the full
known-good freeze of the stack so pip resolves without backtracking.
"""

import setuptools

INSTALL_REQUIRES = [
    "tfx==1.16.0",
    "tensorflow==2.16.2",
    "tf-keras==2.16.0",
    "tensorflow-transform==1.16.0",
    "tensorflow-model-analysis==0.47.1",
    "tensorflow-data-validation==1.16.1",
    "tensorflow-metadata==1.16.1",
    "ml-metadata==1.16.0",
    "tensorflow-serving-api==2.16.1",
    "tensorflow-recommenders==0.7.7",
    # KubeflowV2DagRunner (tfx.orchestration.experimental) exists only when kfp imports.
    "kfp==2.5.0",
    # tensorflow-transform and tfx-bsl import dill, which Beam 2.74 made optional.
    "apache-beam[dill]==2.74.0",
    "grpcio==1.85.1",
    # Plots of `duia bench quality` (Agg backend, no display needed).
    "matplotlib==3.8.4",
    "numpy==1.26.4",
    "pandas==1.5.3",
    "protobuf==3.20.3",
]

EXTRAS_REQUIRE = {
    "test": ["pytest==9.2.0", "hypothesis==6.168.5"],
}

setuptools.setup(
    name="duia-ranking",
    version="0.1.0",
    description=(
        "TFX pipeline and Keras PLE multi-task ranker with DUIA user-interest "
        "enhancement, served over TF Serving's gRPC protocol."
    ),
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(include=["duia", "duia.*"]),
    package_data={"duia": ["configs/*.json", "validation/*.pbtxt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["duia=duia.cli:main"]},
)
