"""The one home of feature keys, label keys and slice keys.

Every other module (ingestion, Transform, the ranker, serving, evaluation) names
features through the constants here, so a rename happens in one place.

Raw features are what the ingestion component writes into tf.Examples (docs/design.md
§3). Transformed features are what Transform hands to the ranker; their
keys are the raw keys with `TRANSFORMED_SUFFIX` appended.
"""

from typing import Dict, List

# Version of the examples' feature set; bump it whenever the ingestion writes
# other features, so cached ExampleGen outputs of the old contract are not reused.
# 2: hist_ts, neg_ts.
CONTRACT_VERSION = 2

# --- identifiers and context -------------------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "ts"

# --- user profile (one value per example) ------------------------------------
AGE_BUCKET = "age_bucket"
GENDER = "gender"
CITY = "city"
DEVICE = "device"
USER_CATEGORICAL = [AGE_BUCKET, GENDER, CITY, DEVICE]

# Preference lists: names ordered by weight, highest first (weights dropped).
PREF_CAT1 = "pref_cat1"
PREF_CAT2 = "pref_cat2"
PREF_TAG = "pref_tag"
USER_PREFERENCE_LISTS = [PREF_CAT1, PREF_CAT2, PREF_TAG]

# --- point-in-time behaviour (derived at ingestion) ---------------------------
HIST_ITEM_IDS = "hist_item_ids"  # last <= 100 valid consumptions, most recent first
HIST_CAT1 = "hist_cat1"
HIST_CAT2 = "hist_cat2"
NEG_ITEM_IDS = "neg_item_ids"  # recent exposures without valid consumption
# Unix seconds of each hist_item_ids / neg_item_ids entry, position for
# position (HIM splits behaviour into time sessions with them). Transform turns
# them into ages in days at the exposure's ts, under the same transformed keys.
HIST_TS = "hist_ts"
NEG_TS = "neg_ts"
USER_HISTORY_SEQUENCES = [HIST_ITEM_IDS, HIST_CAT1, HIST_CAT2]
USER_VALID_COUNT = "user_valid_count"  # valid consumptions in the trailing window
USER_ACTIVITY = "user_activity"  # "low" | "high"

# --- item ---------------------------------------------------------------------
CAT1 = "cat1"
CAT2 = "cat2"
AUTHOR_ID = "author_id"
TAGS = "tags"
DURATION_S = "duration_s"
ITEM_PRIOR_EXPOSURES = "item_prior_exposures"  # exposures of the item before ts
ITEM_POPULARITY = "item_popularity"  # "tail" | "head"
ITEM_CATEGORICAL = [CAT1, CAT2, AUTHOR_ID]

# --- labels ---------------------------------------------------------------------
LABEL_VALID = "label_valid"  # int 0/1
LABEL_WATCH = "label_watch"  # float seconds
LABEL_LIKE = "label_like"  # int 0/1
LABEL_KEYS = [LABEL_VALID, LABEL_WATCH, LABEL_LIKE]

# --- slices ----------------------------------------------------------------------
SLICE_KEYS = [USER_ACTIVITY, ITEM_POPULARITY]
LOW_ACTIVE, HIGH_ACTIVE = "low", "high"
TAIL_ITEM, HEAD_ITEM = "tail", "head"
# Written by EvalSampleGen on the Evaluator's examples only (never trained on):
# 1 / the example's sampling rate, TFMA's example weight.
EVAL_WEIGHT = "eval_weight"

# --- grouping used by the raw-tensor serving signature ----------------------------
# Sent once per request (shape [1] or [1, L]); broadcast over the candidates.
USER_SCALAR_STRING = [USER_ID] + USER_CATEGORICAL + [USER_ACTIVITY]
USER_SEQUENCE_STRING = USER_PREFERENCE_LISTS + USER_HISTORY_SEQUENCES + [NEG_ITEM_IDS]
USER_SCALAR_INT = [USER_VALID_COUNT]
USER_SEQUENCE_INT = [HIST_TS, NEG_TS]  # padded with 0 (dropped before Transform)
# One value per candidate (shape [N] or [N, L]).
ITEM_SCALAR_STRING = [ITEM_ID] + ITEM_CATEGORICAL + [ITEM_POPULARITY]
ITEM_SEQUENCE_STRING = [TAGS]
ITEM_SCALAR_INT = [ITEM_PRIOR_EXPOSURES]
ITEM_SCALAR_FLOAT = [DURATION_S]

STRING_SCALARS = USER_SCALAR_STRING + ITEM_SCALAR_STRING
STRING_SEQUENCES = USER_SEQUENCE_STRING + ITEM_SEQUENCE_STRING
INT_SCALARS = USER_SCALAR_INT + ITEM_SCALAR_INT + [TIMESTAMP]
INT_SEQUENCES = USER_SEQUENCE_INT
FLOAT_SCALARS = ITEM_SCALAR_FLOAT
RAW_FEATURE_KEYS = (STRING_SCALARS + STRING_SEQUENCES + INT_SCALARS + INT_SEQUENCES
                    + FLOAT_SCALARS)

# --- tasks -------------------------------------------------------------------------
# Task name -> label key. The task list of a run is configuration; this is the menu.
TASK_VALID = "valid_consumption"
TASK_WATCH = "watch_time"
TASK_LIKE = "like"
TASK_LABELS: Dict[str, str] = {
    TASK_VALID: LABEL_VALID,
    TASK_WATCH: LABEL_WATCH,
    TASK_LIKE: LABEL_LIKE,
}
BINARY_TASKS = [TASK_VALID, TASK_LIKE]
REGRESSION_TASKS = [TASK_WATCH]
FUSED_SCORE = "score"

# --- serving ---------------------------------------------------------------------------
SERVING_EXAMPLES_SIGNATURE = "serving_default"
SERVING_RAW_SIGNATURE = "rank"
# `rank` for several users in one call: the server's batcher merges concurrent
# `rank` requests into it (serving/batching.py). Its user-level inputs have
# RANK_USERS_PER_CALL rows; CANDIDATE_USER_INPUT [N] is each candidate's user row.
SERVING_USERS_SIGNATURE = "rank_users"
CANDIDATE_USER_INPUT = "candidate_user"
RANK_USERS_PER_CALL = 4
SERVING_EXAMPLES_INPUT = "examples"

TRANSFORMED_SUFFIX = "_xf"


def transformed_name(key: str) -> str:
  """Returns the key Transform gives to raw feature `key`."""
  return key + TRANSFORMED_SUFFIX


def label_for_task(task: str) -> str:
  """Returns the label key of `task`.

  Raises:
    ValueError: if `task` is not a known task.
  """
  if task not in TASK_LABELS:
    raise ValueError(f"Unknown task {task!r}; known tasks: {sorted(TASK_LABELS)}")
  return TASK_LABELS[task]


def task_names(tasks: List[str]) -> List[str]:
  """Validates a task list and returns it unchanged."""
  for task in tasks:
    label_for_task(task)
  return list(tasks)
