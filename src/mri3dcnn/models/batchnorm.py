"""Batch normalisation by TensorFlow's fused kernel: Keras' function at a fraction of its cost.

Keras 3 normalises with separate reductions and elementwise operations, each a pass over
memory. On 3D feature maps these passes dominate: on the 3 mm grid, SFCN's batch norms
took 38 % of its layers' training time, more than half as long as its convolutions.
TensorFlow's `FusedBatchNormV3` computes the same function, forward and backward, in one
kernel per direction. `FusedBatchNormalization` is Keras' layer (same weights, moving
statistics, configuration and serialisation) that calls it where it applies: TensorFlow
backend, float32 inputs of rank 4 or 5 normalised over their channel axis, no mask, no
renormalisation. Anywhere else it runs Keras' own code.
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="mri3dcnn")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, computed by one fused kernel where it can be.

    Same outputs (to float32 rounding: the kernel sums in another order) and the same
    moving statistics: the kernel returns the batch variance with Bessel's correction, which
    is undone, as Keras averages the biased variance.
    """

    #: the fused kernel's lower bound on epsilon
    MIN_EPSILON = 1.001e-5

    def _fused_format(self, inputs, mask) -> str | None:
        """The kernel's data format for these inputs, or None where Keras' code must run."""
        rank = len(inputs.shape)
        axis = self.axis % rank if isinstance(self.axis, int) else None
        if (keras.backend.backend() != "tensorflow" or mask is not None or self.renorm
                or self.synchronized or rank not in (4, 5) or self.epsilon < self.MIN_EPSILON
                or keras.backend.standardize_dtype(inputs.dtype) != "float32"
                or self.dtype_policy.compute_dtype != "float32"):
            return None
        spatial = "DHW" if rank == 5 else "HW"
        if axis == rank - 1:
            return f"N{spatial}C"
        return f"NC{spatial}" if axis == 1 else None

    def call(self, inputs, training=None, mask=None):
        fmt = self._fused_format(inputs, mask)
        if fmt is None:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1 if fmt.endswith("C") else 1]
        gamma = self.gamma if self.scale else tf.ones((channels,), "float32")
        beta = self.beta if self.center else tf.zeros((channels,), "float32")
        if training and self.trainable:
            y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, data_format=fmt, is_training=True)
            n = tf.cast(tf.size(inputs) // channels, "float32")
            variance = unbiased * tf.maximum(n - 1.0, 0.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum
                                    + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, data_format=fmt, is_training=False)
        return y
