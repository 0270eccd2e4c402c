"""Layers that make an exported model self-contained: the intensity normalisation fitted on
a fold's training subjects, and the patient score the study reports.

Both are registered with Keras under the package name `mri3dcnn`, so a saved `.keras`
file loads wherever this package is importable, with no side file of arrays.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mri3dcnn")
class Standardise(keras.layers.Layer):
    """Voxel-wise z-scores against fixed mean and spread volumes.

    The arithmetic runs in `precision`, the dtype of the fitted arrays, and the result is
    float32, as `preprocessing.Normaliser.transform` does in numpy, so a model with this
    layer in front sees bit for bit the inputs it was trained on. The arrays are
    non-trainable weights of shape (X, Y, Z, 1), stored in the model.
    """

    def __init__(self, shape: tuple[int, int, int], precision: str = "float32",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.volume_shape = tuple(int(s) for s in shape)
        self.precision = precision
        weight = {"shape": (*self.volume_shape, 1), "dtype": precision, "trainable": False,
                  "autocast": False}
        self.mean = self.add_weight(name="mean", initializer="zeros", **weight)
        self.std = self.add_weight(name="std", initializer="ones", **weight)

    def call(self, x):
        z = (ops.cast(x, self.precision) - self.mean) / self.std
        return ops.cast(z, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "shape": list(self.volume_shape),
                "precision": self.precision}


@keras.saving.register_keras_serializable(package="mri3dcnn")
class PatientScore(keras.layers.Layer):
    """The two sigmoid outputs as one patient score, p(patient) / (p(patient) +
    p(control)), shape (n, 1): the score every stored prediction holds."""

    def call(self, prob):
        return prob[:, 1:2] / ops.maximum(prob[:, 0:1] + prob[:, 1:2], 1e-12)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)
