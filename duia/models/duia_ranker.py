"""The PLE ranker with DUIA's user-interest enhancement (Liu et al., CIKM 2024).

    embeddings --stop_gradient--> auxiliary towers -> v_user, v_item   (docs/design.md §4.2)
    v_user -> UIE (GHCA or flat memory)       -> enhancement
    v_user, v_item -> UPBE (personal memory)  -> enhancement
    history item vectors -> UHSE (item GHCA)  -> enhancement
    v_item -> item enhancement (duia_items)   -> enhancement
    [PLE input, enhancements] -> PLE -> tasks

Training loss (DUIA eq. 15): L_MTL + L_aux. The towers' inputs are the ranker's
embeddings under stop_gradient (docs/design.md §4.2); the task losses do reach the
towers through the similarity weights of eq. 6 and UHSE's attention. The clustering terms of eq. 15
(rho, lambda, eta) are applied by the memory layers themselves, as a step on
their non-trainable centers inside `call` (like BatchNormalization's moving
statistics), so the optimizer never touches the centers.
"""

from typing import Dict, Optional

import tensorflow as tf

from duia.layers import two_tower
from duia.models import config as config_lib
from duia.models import enhancements
from duia.models import features
from duia.models import him_ranker
from duia.models import inputs as inputs_lib
from duia.models import ple_ranker

XF = features.transformed_name


def _normalize(v: tf.Tensor, on: bool) -> tf.Tensor:
  return tf.math.l2_normalize(v, axis=-1) if on else v


class DUIARanker(ple_ranker.PLERanker):
  """PLE plus the DUIA components switched on by `config.duia.variant`."""

  def __init__(self, config: config_lib.TrainingConfig, table_sizes: Dict[str, int], **kwargs):
    super().__init__(config, table_sizes, **kwargs)
    d = config.duia
    self.duia_config = d
    user_buckets = config.features.user_id_buckets
    item_buckets = config.features.item_id_buckets
    self.aux = two_tower.AuxiliaryTwoTower(d.tower_units, d.memory_dim, name="aux_two_tower")
    self.uie = enhancements.UIE(
        d, user_buckets, flat=d.uie == "flat",
        seed=enhancements.memory_seed(config.seed, enhancements.USER_MEMORY_SEED_OFFSET),
        name="uie")
    self.upbe = enhancements.UPBE(d, user_buckets, name="upbe") if d.upbe else None
    self.uhse = enhancements.UHSE(
        d, seed=enhancements.memory_seed(config.seed, enhancements.ITEM_MEMORY_SEED_OFFSET),
        name="uhse") if d.uhse else None
    self.item_enhancement = (enhancements.ItemEnhancement(d, item_buckets, name="duia_items")
                             if d.items else None)

  def history_vectors(self, inputs: Dict[str, tf.Tensor]):
    """Item-tower vectors of the distinct history items, and each position's index.

    UHSE needs a vector per history position; computing it once per unique
    item in the batch (docs/design.md §4.4) keeps the tower and the center lookups to
    U rows instead of B * L.

    Returns:
      (vectors [U, d], positions [B, L] into them).
    """
    ids = inputs[XF(features.HIST_ITEM_IDS)]
    cat1_ids = inputs[XF(features.HIST_CAT1)]
    cat2_ids = inputs[XF(features.HIST_CAT2)]
    if ids.shape[0] == 1:
      # One user's history (the `rank` signature): no batch to deduplicate,
      # each of the L positions is its own row.
      rows, cat1, cat2 = ids[0], cat1_ids[0], cat2_ids[0]
      positions = tf.range(tf.shape(ids)[1])[None, :]
    else:
      flat_ids = tf.reshape(ids, [-1])
      rows, position = tf.unique(flat_ids)
      # An item id has one category: read it at the item's first occurrence.
      first = tf.math.unsorted_segment_min(tf.range(tf.size(flat_ids)), position,
                                           tf.shape(rows)[0])
      cat1 = tf.gather(tf.reshape(cat1_ids, [-1]), first)
      cat2 = tf.gather(tf.reshape(cat2_ids, [-1]), first)
      positions = tf.reshape(position, tf.shape(ids))
    vectors = self.aux.item_vector(self.embedding.item_core(rows, cat1, cat2))
    return tf.stop_gradient(_normalize(vectors, self.duia_config.normalize)), positions

  def tower_vectors(self, parts: Dict[str, tf.Tensor]):
    """(v_user, v_item) of the auxiliary towers from `FeatureEmbedding` parts.

    The user tower reads the profile and the behaviour; with
    `duia.user_tower_target_attention` off, not the history attended by the
    target item, so that v_user (and the user centres it is assigned to) is a
    property of the user alone, as DUIA's user tower is (section 4.2).
    """
    behaviour = (parts["behaviour"] if self.duia_config.user_tower_target_attention
                 else parts["user_behaviour"])
    return self.aux(inputs_lib.concat_rows([parts["user"], behaviour]), parts["item_core"])

  def queries(self, parts: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Each memory's queries (normalised tower vectors), by `memories()` name."""
    v_user, v_item = self.tower_vectors(parts)
    return {name: _normalize(v_user if name.startswith("user") else v_item,
                             self.duia_config.normalize)
            for name in self.memories()}

  def encode_parts(self, inputs, training=None, labels=None):
    """The ranker's base input parts and each enhancement block's vector.

    Returns:
      (base [list of [B, *]: `inputs.base_parts`], {block name: [B,
      enhancement_dim]} in the order they are concatenated, side outputs for
      `extra_loss`).
    """
    parts = self.embedding(inputs)
    base = inputs_lib.base_parts(parts)
    v_user, v_item = self.tower_vectors(parts)
    q_user = _normalize(v_user, self.duia_config.normalize)
    q_item = _normalize(v_item, self.duia_config.normalize)
    user_ids = inputs[XF(features.USER_ID)]
    groups = inputs.get(XF(features.USER_ACTIVITY))
    positive = None
    if labels is not None and training:
      positive = tf.reshape(labels[features.LABEL_VALID], [-1]) > 0.5
    enhanced = {"uie": self.uie(q_user, user_ids, groups, training=training)}
    if self.upbe is not None:
      enhanced["upbe"] = self.upbe(self.uie.memory, user_ids, q_user, q_item, positive,
                                   training=training)
    if self.uhse is not None:
      unique_vectors, positions = self.history_vectors(inputs)
      enhanced["uhse"] = self.uhse(q_item, unique_vectors, positions,
                                   tf.not_equal(inputs[XF(features.HIST_ITEM_IDS)], 0),
                                   positive, training=training)
    if self.item_enhancement is not None:
      enhanced["items"] = self.item_enhancement(
          self.uhse.memory, self.uie.memory, inputs[XF(features.ITEM_ID)], q_item, q_user,
          positive, training=training)
    return base, enhanced, {"v_user": v_user, "v_item": v_item}

  def encode(self, inputs, training=None, labels=None):
    base, enhanced, side = self.encode_parts(inputs, training=training, labels=labels)
    return base + list(enhanced.values()), side

  def extra_loss(self, predictions, side, labels) -> Optional[tf.Tensor]:
    """DUIA eq. 1, weighted by the fused score (merge score) under stop_gradient."""
    return two_tower.auxiliary_loss(side["v_user"], side["v_item"],
                                    labels[features.LABEL_VALID],
                                    ple_ranker.fuse(predictions, self.config))

  def memories(self) -> Dict[str, tf.keras.layers.Layer]:
    """Name -> memory layer, for cluster reports."""
    out = {"user_ghca" if self.uie.memory.hierarchical else "user_flat": self.uie.memory}
    if self.uhse is not None:
      out["item_ghca"] = self.uhse.memory
    return out


def build_ranker(config: config_lib.TrainingConfig, table_sizes: Dict[str, int]):
  """The ranker of `config.duia.variant` (plain PLE for "ple", HIM for "him")."""
  if config.duia.variant == "ple":
    return ple_ranker.PLERanker(config, table_sizes)
  if config.duia.variant == "him":
    return him_ranker.HIMRanker(config, table_sizes)
  return DUIARanker(config, table_sizes)
