"""Packaging for the DUIA ranking pipeline.

Direct dependencies are pinned here, and only here; `constraints.txt` is the full
known-good freeze of the stack so pip resolves without backtracking.
"""

import setuptools

# Every package the code imports is declared, even when TFX would bring it.
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
    # Arrow columns and tfx_bsl's example encoder (the ingestion's columnar sweep).
    "pyarrow==10.0.1",
    "tfx-bsl==1.16.1",
    "absl-py==1.4.0",
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
    # The TLS test makes its own certificates; the deploy test reads the YAML manifests.
    "test": ["pytest==9.2.0", "hypothesis==6.168.5", "cryptography==47.0.0", "PyYAML==6.0.3"],
    # benchmarks/: peak RSS of process trees, and reference AUCs.
    "bench": ["psutil==7.2.2", "scikit-learn==1.5.1"],
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
