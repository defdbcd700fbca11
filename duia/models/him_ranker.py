"""The PLE ranker with HIM's hybrid interest (Deng et al., "Hybrid Interest
Modeling for Long-tailed Users"), for comparison with DUIA on the same data.

    history, negatives --reorganization (3.1)--> T sessions, by frequency
    sessions -> UBP (eq. 1-5) -> p_x, p_z
    p_x      -> UBC (eq. 6-7) -> p^_x, c_z
    p_z, c_z, target item -> hybrid attention (eq. 9-10) -> e_p, e_c
    [PLE input, e_p, e_c] -> PLE -> tasks

Training loss (eq. 12): L_c + alpha * L_g, where L_c is the tasks' losses (the
paper's eq. 11 for its one CTR task) and L_g UBC's hinge loss (eq. 8).

Like the DUIA variants, HIM's vectors are added to the PLE input rather than
replacing its pooled history, so every variant is "PLE + one enhancement" and
the uplift tables compare like with like. History and negatives are embedded
with the item-id table the PLE input already uses (negatives have no
categories in the data contract, and eq. 2 compares the two in one space).
"""

from typing import Dict

import tensorflow as tf

from duia.layers import him_hybrid
from duia.layers import him_reorganization
from duia.layers import him_ubc
from duia.layers import him_ubp
from duia.layers import user_rows
from duia.models import config as config_lib
from duia.models import features
from duia.models import inputs as inputs_lib
from duia.models import ple_ranker

XF = features.transformed_name


class HIMRanker(ple_ranker.PLERanker):
  """PLE plus HIM's UBP and UBC (`config.him`)."""

  def __init__(self, config: config_lib.TrainingConfig, table_sizes: Dict[str, int], **kwargs):
    super().__init__(config, table_sizes, **kwargs)
    him = config.him
    self.him_config = him
    self.reorganize = him_reorganization.SessionReorganization(
        him.session_days, him.top_n, name="him_reorganization")
    self.ubp = him_ubp.UserBehaviorPyramid(him.gru_units, config.embedding_dim, name="him_ubp")
    self.ubc = him_ubc.UserBehaviorClustering(him.num_sessions, him.num_groups, him.group_dim,
                                              name="him_ubc")
    self.hybrid = him_hybrid.HybridInterestAttention(name="him_hybrid")

  def sessions(self, inputs: Dict[str, tf.Tensor], ids_key: str, ages_key: str):
    """(embeddings [B, T, n, d], frequencies [B, T, n]) of one behaviour sequence."""
    ids, frequency = self.reorganize(inputs[XF(ids_key)], inputs[XF(ages_key)])
    return self.embedding.tables["item_id"](ids), frequency

  def encode(self, inputs, training=None, labels=None):
    del labels  # HIM's loss needs no labels beyond the tasks'
    parts = self.embedding(inputs)
    base = inputs_lib.base_parts(parts)
    positives, positive_frequency = self.sessions(inputs, features.HIST_ITEM_IDS,
                                                  features.HIST_TS)
    negatives, negative_frequency = self.sessions(inputs, features.NEG_ITEM_IDS,
                                                  features.NEG_TS)
    p_x, p_z = self.ubp(positives, positive_frequency, negatives, negative_frequency)
    reconstructed, c_z, _ = self.ubc(p_x)
    sessions = self.him_config.num_sessions
    flat_p = tf.reshape(p_z, [-1, sessions * p_z.shape[-1]])  # eq. 9
    flat_c = tf.reshape(c_z, [-1, sessions * c_z.shape[-1]])
    # One user's row broadcasts in the hybrid's products; rank_users' rows are
    # gathered per candidate.
    hybrid, _ = self.hybrid([user_rows.align(flat_p, parts["item"]),
                             user_rows.align(flat_c, parts["item"]), parts["item"]])
    side = {"reconstructed": reconstructed, "p_z": p_z,
            "sessions_present": him_ubp.sessions_present(positive_frequency, negative_frequency)}
    return base + [hybrid], side

  def extra_loss(self, predictions, side, labels):
    """alpha * L_g (eq. 8, 12) with p users of the batch as negatives."""
    del predictions, labels
    reconstructed = side["reconstructed"]
    negative_rows = him_ubc.sample_negative_rows(tf.shape(reconstructed)[0],
                                                 self.him_config.num_negative_users)
    return self.him_config.group_loss_weight * him_ubc.group_hinge_loss(
        reconstructed, side["p_z"], negative_rows, side["sessions_present"])
