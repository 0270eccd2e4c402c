"""mri3dcnn: 3D CNN classification of schizophrenia from brain MRI, reproducibly.

TensorFlow 2.21 turns its oneDNN kernels on by default only on CPUs with AVX-512-class
features; on AVX2-only hosts its 3D convolutions then run on a path 4-10x slower. The
switch is read once, when TensorFlow is imported, so it is set here, before any module of
this package can import TensorFlow. A value the user set (``TF_ENABLE_ONEDNN_OPTS=0``)
wins.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
