"""The TFMA EvalConfig: per-task metrics, activity/popularity slices, blessing.

In the pipeline the metrics are weighted by EvalSampleGen's `eval_weight`
(components/eval_sample_gen.py), so they estimate the whole eval split's
values; `example_count` stays the number of examples evaluated.

Metrics (docs/design.md §6): AUC, log loss (binary cross-entropy) and calibration
(mean prediction / mean label) per binary task; RMSE for watch time. Slices:
overall, `user_activity`, `item_popularity` and their cross. The model is
blessed when the gating task's overall AUC clears an absolute floor and does not
drop more than a tolerance below the last blessed model's.
"""

from typing import Optional, Sequence

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from duia.models import features
from duia.pipeline import configs

# Keras' log loss (through TFMA's wrapper). TFMA's own BinaryCrossEntropy
# (same metric name) and 1,000 AUC thresholds instead of TFMA's 10,000 were
# measured and not taken: no time saved beyond the noise, and 1,000
# thresholds moved a slice's like AUC by up to 2.5e-3
# (benchmarks/evaluator_bench, docs/scale.md).
BINARY_METRICS = ("AUC", "BinaryCrossentropy", "Calibration", "MeanLabel", "MeanPrediction")
REGRESSION_METRICS = ("RootMeanSquaredError", "MeanLabel", "MeanPrediction")
SLICES = (
    (),
    (features.USER_ACTIVITY,),
    (features.ITEM_POPULARITY,),
    (features.USER_ACTIVITY, features.ITEM_POPULARITY),
)


def binary_tasks():
  return list(features.BINARY_TASKS)


def make_eval_config(tasks: Sequence[str], blessing: configs.BlessingConfig,
                     example_weight_key: Optional[str] = None) -> tfma.EvalConfig:
  """Builds the EvalConfig for a model trained on `tasks`.

  Args:
    tasks: the model's tasks (its outputs).
    blessing: the AUC thresholds of the blessing task.
    example_weight_key: the feature every task's metrics weigh examples by
      (the pipeline: EvalSampleGen's `eval_weight`); None: unweighted.
  """
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
    # The examples evaluated, unweighted whatever the other metrics are: a
    # slice's sample size (what its interval rests on), not an estimate.
    metrics_specs.append(tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="ExampleCount")], output_names=[task],
        example_weights=tfma.ExampleWeightOptions(unweighted=True)))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=features.SERVING_EXAMPLES_SIGNATURE,
          label_keys={task: features.label_for_task(task) for task in tasks},
          example_weight_keys=({task: example_weight_key for task in tasks}
                               if example_weight_key else {}))],
      metrics_specs=metrics_specs,
      slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in SLICES],
      # The metrics compiled into the Keras model are training metrics over
      # transformed labels; evaluation uses only the ones configured above.
      options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)))
