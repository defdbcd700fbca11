"""The server's TensorFlow thread flags reach TensorFlow (in a fresh interpreter:
the pools are fixed once the first op has run)."""

import json

from tests import fresh_interpreter


def test_thread_flags_set_tensorflows_pools():
  measured = fresh_interpreter.run_json(__file__, timeout_s=120)
  assert measured == {"intra": 1, "inter": 2, "untouched_intra": 0}


if __name__ == "__main__":
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from duia.serving import server_flags  # pylint: disable=g-import-not-at-top
  args = server_flags.build_parser().parse_args([
      "--model_base_path=/m", "--tensorflow_intra_op_parallelism=1",
      "--tensorflow_inter_op_parallelism=2"])
  server_flags.set_tensorflow_threads(0, 0)  # 0 leaves TensorFlow's choice (0)
  untouched = tf.config.threading.get_intra_op_parallelism_threads()
  server_flags.set_tensorflow_threads(args.tensorflow_intra_op_parallelism,
                                      args.tensorflow_inter_op_parallelism)
  print(json.dumps({"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
                    "untouched_intra": untouched}))
