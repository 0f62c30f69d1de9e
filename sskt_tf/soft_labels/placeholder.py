"""The placeholder that stands for a source whose soft labels come from a cache."""

import keras

from sskt_tf.errors import ConfigError


@keras.saving.register_keras_serializable(package="sskt_tf")
class CachedSource(keras.layers.Layer):
    """Stands for a source whose logits come from a soft-label cache.

    It has the source's name and class count (so :class:`sskt_tf.SSKTModel`
    builds the same auxiliary head) but no network: training batches must carry
    the logits (``{"images": ..., "soft_labels": (...)}``).

    Args:
        num_classes: size of the source's label space.
        name: the source's name.
    """

    runnable = False

    def __init__(self, num_classes, name, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(name=name, trainable=False, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, images):
        raise ConfigError(
            f"Source {self.name!r} is a placeholder for cached soft labels: train on batches that carry them, "
            "({'images': ..., 'soft_labels': (...)}, labels), e.g. from SoftLabelCache.train_pipeline."
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
