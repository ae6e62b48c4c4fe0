"""Checkpoint tracking for Keras 3 layers that hold sub-layers in Python lists.

Keras 3 wraps a list attribute (``self.blocks = [...]``) in its own ``TrackedList``,
which TensorFlow's object graph does not see: ``tf.train.Checkpoint(model=model)`` then
saves only the variables reachable through plain attributes, and a restore in a new
process leaves the rest at their initial values while
``assert_existing_objects_matched()`` still passes (with GENESIS: 27 of 150 variables,
none of the batch-norm moving statistics). Keras converts these lists for SavedModel
export but not for checkpoints. The mixin below names each list element as a checkpoint
child, ``<attribute>-<index>`` (e.g. ``mask_encoder/blocks-0/h_norm/moving_mean``), so
every variable, trainable or not, is in the checkpoint.
"""
import keras
import tensorflow as tf

_Trackable = tf.__internal__.tracking.Trackable


class ListTrackingMixin:
    """Makes sub-layers held in list (or dict) attributes part of TF checkpoints."""

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type != "checkpoint":
            return children  # Keras converts its collections for SavedModel itself.
        for attribute in getattr(self, "_tracked", ()):
            value = getattr(self, attribute, None)
            items = value.items() if isinstance(value, dict) else (
                enumerate(value) if isinstance(value, list | tuple) else ())
            for key, item in items:
                if isinstance(item, _Trackable):
                    children.setdefault(f"{attribute}-{key}", item)
        return children


class Layer(ListTrackingMixin, keras.layers.Layer):
    """keras.layers.Layer whose list-held sub-layers are checkpointed."""


class Model(ListTrackingMixin, keras.Model):
    """keras.Model whose list-held sub-layers are checkpointed."""
