"""Profiles (tiny | quick | full) and project paths.

A profile fixes everything that changes the numbers a chapter prints: the cohort size, the
study grid, the cross-validation plan and the training budget. Results are keyed by a hash
of these settings, so changing a profile never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: The SPM 3 mm MNI box of the original study: 61 x 73 x 61 voxels at 3 mm.
STUDY_BOX_ORIGIN = (-90.0, -126.0, -72.0)
STUDY_BOX_EXTENT = (180.0, 216.0, 180.0)


@dataclass(frozen=True)
class Profile:
    """All settings that decide a run's results."""

    name: str
    n_subjects: int
    n_sites: int
    grid_mm: float
    n_folds: int
    n_repeats: int
    epochs: int
    batch_size: int
    patience: int
    #: the seed of every fit (weights, batch order, inner validation split)
    seed: int = 0
    cohort_seed: int = 2020
    augment: bool = False
    svm_inner_folds: int = 3
    svm_C: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    #: map sets each CNN family is cross-validated on in chapters 4-6
    cnn_map_sets: tuple[tuple[str, ...], ...] = (("gm",),)
    #: depths of the Sequential family run in chapter 4
    sequential_models: tuple[str, ...] = ("sequential_2",)
    #: maps compared one by one and fused in chapter 7
    fusion_maps: tuple[str, ...] = ("gm", "wm", "fa", "md")
    #: correctly classified patients per fold whose saliency enters the group maps
    saliency_subjects: int = 5
    #: of those, how many occlusion explains (a forward pass per cube)
    occlusion_subjects: int = 2
    #: chapter 10: modern nets trained with the modern recipe
    fair_modern: tuple[str, ...] = ("sfcn",)
    #: chapter 10: original families also trained with the modern recipe
    fair_originals: tuple[str, ...] = ()
    #: chapter 10: modern nets pretrained on age before the diagnosis
    fair_pretrained: tuple[str, ...] = ()
    #: epochs of a modern-recipe fit (None: `epochs`)
    fair_epochs: int | None = None
    #: ensemble members of a modern-recipe fit: the first seeds of the recipe (0: all)
    fair_ensemble: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", n_subjects=24, n_sites=3, grid_mm=8.0, n_folds=2, n_repeats=1,
        epochs=3, batch_size=8, patience=3, svm_inner_folds=2, saliency_subjects=2, occlusion_subjects=1,
        fusion_maps=("gm", "fa"), fair_originals=("sequential_2",), fair_pretrained=("sfcn",),
        fair_ensemble=2,
    ),
    "quick": Profile(
        name="quick", n_subjects=400, n_sites=3, grid_mm=6.0, n_folds=3, n_repeats=1,
        epochs=30, batch_size=8, patience=8, fusion_maps=("gm", "fa"),
        fair_epochs=10, fair_ensemble=1,
    ),
    "full": Profile(
        name="full", n_subjects=300, n_sites=3, grid_mm=3.0, n_folds=5, n_repeats=10,
        epochs=60, batch_size=8, patience=15, augment=True,
        cnn_map_sets=(("gm",), ("wm",), ("fa",), ("md",), ("gm", "wm", "fa", "md")),
        sequential_models=("sequential_1", "sequential_2", "sequential_3"),
        saliency_subjects=20, occlusion_subjects=10,
        fair_modern=("sfcn", "resnet3d"), fair_originals=("sequential_2", "inception_1"),
        fair_pretrained=("sfcn",),
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """Look a profile up by name, with the list of valid names in the error."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}."
        ) from None


def study_grid(grid_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the study grid: the SPM MNI box sampled every `grid_mm`.

    At 3 mm this is the original study's 61 x 73 x 61 grid.
    """
    if grid_mm <= 0:
        raise ValueError(f"grid_mm must be positive, got {grid_mm}.")
    affine = np.diag([grid_mm, grid_mm, grid_mm, 1.0])
    affine[:3, 3] = STUDY_BOX_ORIGIN
    shape = tuple(int(np.floor(e / grid_mm + 1e-6)) + 1 for e in STUDY_BOX_EXTENT)
    return affine, shape  # type: ignore[return-value]


def config_hash(config: dict) -> str:
    """Stable short hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def project_root(start: Path | None = None) -> Path:
    """The folder holding `data_manifest.yaml`, searched upwards; `MRI3DCNN_HOME` wins.

    Notebooks run with the chapter folder as working directory, so paths are resolved from
    the project root rather than from wherever the kernel happens to start.
    """
    env = os.environ.get("MRI3DCNN_HOME")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "data_manifest.yaml").exists() and (folder / "notebooks").is_dir():
            return folder
    return here


def default_paths(profile: str | Profile, root: Path | None = None) -> dict[str, Path]:
    """Where a profile's synthetic cohort, array cache and results live."""
    p = get_profile(profile)
    root = project_root() if root is None else Path(root)
    return {
        "root": root,
        "cohort": root / "data" / f"synthetic-{p.name}",
        "cache": root / "cache",
        "results": root / "results" / p.name,
    }


def package_data_dir(package: str, why: str, pip_spec: str) -> Path:
    """The folder of an installed package whose data files (not code) the library reads,
    found without importing it; the error says what needs it and how to install it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{why} needs the package {package}, which is not installed: "
                                f"`pip install {pip_spec}` (make env does).")
    return Path(next(iter(spec.submodule_search_locations)))
