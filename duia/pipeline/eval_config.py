"""The TFMA EvalConfig: per-task metrics, activity/popularity slices, blessing.

Metrics (DESIGN section 6): AUC, log loss (binary cross-entropy) and calibration
(mean prediction / mean label) per binary task; RMSE for watch time. Slices:
overall, `user_activity`, `item_popularity` and their cross. The model is
blessed when the gating task's overall AUC clears an absolute floor and does not
drop more than a tolerance below the last blessed model's.
"""

from typing import Sequence

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from duia.models import features
from duia.pipeline import configs

# Keras' log loss (through TFMA's wrapper). TFMA's own BinaryCrossEntropy
# (same metric name) and 1,000 AUC thresholds instead of TFMA's 10,000 were
# measured and not taken: no time saved beyond the noise, and 1,000
# thresholds moved a slice's like AUC by up to 2.5e-3
# (benchmarks/evaluator_bench, docs/scale.md).
BINARY_METRICS = ("ExampleCount", "AUC", "BinaryCrossentropy", "Calibration", "MeanLabel",
                  "MeanPrediction")
REGRESSION_METRICS = ("ExampleCount", "RootMeanSquaredError", "MeanLabel",
                      "MeanPrediction")
SLICES = (
    (),
    (features.USER_ACTIVITY,),
    (features.ITEM_POPULARITY,),
    (features.USER_ACTIVITY, features.ITEM_POPULARITY),
)


def binary_tasks():
  return list(features.BINARY_TASKS)


def make_eval_config(tasks: Sequence[str], blessing: configs.BlessingConfig) -> tfma.EvalConfig:
  """Builds the EvalConfig for a model trained on `tasks`."""
  metrics_specs = []
  for task in tasks:
    names = BINARY_METRICS if task in features.BINARY_TASKS else REGRESSION_METRICS
    metric_configs = []
    for name in names:
      threshold = None
      if task == blessing.task and name == "AUC":
        threshold = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": blessing.auc_floor}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -blessing.max_auc_regression}))
      metric_configs.append(tfma.MetricConfig(class_name=name, threshold=threshold))
    metrics_specs.append(tfma.MetricsSpec(metrics=metric_configs, output_names=[task]))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=features.SERVING_EXAMPLES_SIGNATURE,
          label_keys={task: features.label_for_task(task) for task in tasks})],
      metrics_specs=metrics_specs,
      slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in SLICES],
      # The metrics compiled into the Keras model are training metrics over
      # transformed labels; evaluation uses only the ones configured above.
      options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)))
