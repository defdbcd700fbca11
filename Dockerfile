# The pipeline image: TFX 1.16 with this project installed.
#
# Every Kubeflow step runs in it (`python -m
# tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`, see
# duia/pipeline/kubeflow_runner.py), and Dataflow/Flink/Spark workers can use it
# as their Beam SDK container: the base image's ENTRYPOINT, Beam's boot
# program, is kept.
#
#   docker build -t duia-ranking:0.1.0 .
#
# Not built on the development machine: it has no Docker engine.
FROM tensorflow/tfx:1.16.0

# Keras 2 (tf-keras) for TFX 1.16, TFMA and TFRS: it must be set before
# TensorFlow is first imported, in every process (stack NOTES point 4).
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /pipeline

# Kubeflow runs the executors with `python`, so install through `python -m pip`:
# TFX images have shipped a `pip` bound to another interpreter
# (tensorflow/tfx#6368). setup.py needs Python 3.10; fail here, not in a pod.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"

# As the Makefile does: older pips backtrack for minutes on tfx==1.16.0.
RUN python -m pip install --upgrade "pip==26.*"

# The known-good freeze as constraints, so the image runs the stack the tests ran.
COPY . /pipeline
RUN python -m pip install -c constraints.txt /pipeline

# Smoke check: Keras 2, the pipeline definition and the Kubeflow executor import.
RUN python -c "from duia import keras_env; keras_env.check_keras2(); \
import duia.pipeline.pipeline; \
import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
