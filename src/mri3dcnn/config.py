"""Profiles (tiny | quick | full) and project paths.

A profile fixes everything that changes the numbers a chapter prints: the cohort size, the
study grid, the cross-validation plan and the training budget. Results are keyed by a hash
of these settings, so changing a profile never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .space import study_grid  # noqa: F401  (re-exported)


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
    #: C values of the linear SVMs' inner search; low enough that strongly regularised
    #: voxel models are inside the grid, not at its edge
    svm_C: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    #: label permutations of a whole SVM or 2D-feature pipeline ("better than chance");
    #: 19 is the fewest that gives an exact 0.05-level test. Each one reruns a chapter's
    #: cross-validations: on `quick`, about 14 CPU-s for chapter 2 and 4 for chapter 3's
    #: EfficientNet-Lite0 models, so its 19 take about 6 minutes of one core
    n_permutations: int = 99
    #: the same for a CNN configuration (each permutation is a full cross-validation)
    n_permutations_cnn: int = 0
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
    #: epochs of a modern-recipe fit (0: `epochs`)
    fair_epochs: int = 0
    #: ensemble members of a modern-recipe fit: the first seeds of the recipe (0: all)
    fair_ensemble: int = 0
    #: the simulation appendix: factors on every planted d (0: the null cohort) ...
    sweep_scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    #: ... times cohort sizes (all sites together), one fresh cohort per cell
    sweep_sizes: tuple[int, ...] = (100, 200, 400, 800)
    #: the grid of the sweep's cohorts (coarser than the study's: one cohort per cell)
    sweep_grid_mm: float = 8.0
    #: repeats of the sweep's cross-validation (its folds are the profile's `n_folds`)
    sweep_repeats: int = 1
    #: the CNN family cross-validated in the sweep, on the cells below
    sweep_cnn: str = "sequential_2"
    #: the CNN runs on the cells whose scale is here and whose size is in `sweep_cnn_sizes`
    sweep_cnn_scales: tuple[float, ...] = ()
    sweep_cnn_sizes: tuple[int, ...] = ()
    #: epochs of a sweep CNN fit (0: `epochs`); patience and batch are the profile's
    sweep_epochs: int = 0
    #: the CNNs' arithmetic, one of `PRECISIONS`: "float32", or Keras' mixed precision
    #: (layers compute in float16 or bfloat16, weights and outputs stay float32), which
    #: pays on GPUs with tensor cores and costs on CPUs without native half precision;
    #: float16 runs on a GPU only (TensorFlow's CPU build has no float16 3D max pooling)
    precision: str = "float32"

    def as_dict(self) -> dict:
        return asdict(self)

    def changed_settings(self) -> dict:
        """The settings that differ from the named profile it extends (empty for the
        named profile itself), as JSON-able values."""
        base = PROFILES.get(self.name)
        mine = self.as_dict()
        if base is None:
            return {k: v for k, v in mine.items() if k != "name"}
        theirs = base.as_dict()
        return {k: v for k, v in mine.items() if v != theirs[k]}

    @property
    def label(self) -> str:
        """The name, plus a hash of the changed settings when a study configuration
        changed any: results of different settings never share a folder."""
        changed = self.changed_settings()
        return self.name if not changed else f"{self.name}-{config_hash(changed)[:8]}"


#: the CNN arithmetic a profile may ask for (Keras dtype-policy names)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", n_subjects=24, n_sites=3, grid_mm=8.0, n_folds=2, n_repeats=1,
        epochs=3, batch_size=8, patience=3, svm_inner_folds=2, saliency_subjects=1, occlusion_subjects=1,
        # 9 permutations: the smallest p is 0.1; tiny checks that every step runs, not effects
        fusion_maps=("gm", "fa"), n_permutations=9, fair_originals=("sequential_2",),
        fair_pretrained=("sfcn",), fair_ensemble=1,
        sweep_scales=(0.0, 2.0), sweep_sizes=(40,), sweep_grid_mm=10.0,
        sweep_cnn_scales=(2.0,), sweep_cnn_sizes=(40,), sweep_epochs=1,
    ),
    # the 30-minute book on 2 cores: enough subjects that the whole-brain model is
    # detectably above chance, short CNN training (the full profile trains 60 epochs)
    "quick": Profile(
        name="quick", n_subjects=300, n_sites=3, grid_mm=6.0, n_folds=3, n_repeats=1,
        epochs=12, batch_size=8, patience=4, fusion_maps=("gm", "fa"),
        fair_epochs=12, fair_ensemble=1, n_permutations=19,
        saliency_subjects=3, occlusion_subjects=1,
        sweep_scales=(0.5, 1.0, 2.0), sweep_sizes=(100, 300),
        sweep_cnn_scales=(2.0,), sweep_cnn_sizes=(300,),
    ),
    "full": Profile(
        name="full", n_subjects=300, n_sites=3, grid_mm=3.0, n_folds=5, n_repeats=10,
        epochs=60, batch_size=8, patience=15, augment=True,
        cnn_map_sets=(("gm",), ("wm",), ("fa",), ("md",), ("gm", "wm", "fa", "md")),
        sequential_models=("sequential_1", "sequential_2", "sequential_3"),
        saliency_subjects=20, occlusion_subjects=10, n_permutations=99, n_permutations_cnn=19,
        fair_modern=("sfcn", "resnet3d"), fair_originals=("sequential_2", "inception_1"),
        fair_pretrained=("sfcn",),
        sweep_grid_mm=6.0, sweep_repeats=3, sweep_cnn_scales=(0.5, 1.0, 1.5, 2.0),
        sweep_cnn_sizes=(100, 200, 400, 800),
    ),
}


def get_profile(name: str | Profile | Mapping) -> Profile:
    """Look a profile up by name, with the list of valid names in the error; a mapping is
    a study configuration's settings (`profile_from_settings`)."""
    if isinstance(name, Profile):
        return name
    if isinstance(name, Mapping):
        return profile_from_settings(name)
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}."
        ) from None


#: the profile settings that decide the synthetic cohort
COHORT_SETTINGS = ("n_subjects", "n_sites", "grid_mm", "cohort_seed")
#: the least value of integer settings that have one
_MINIMUM = {"n_subjects": 4, "n_sites": 1, "n_folds": 2, "n_repeats": 1, "epochs": 1,
            "batch_size": 1, "patience": 0, "svm_inner_folds": 2, "saliency_subjects": 0,
            "occlusion_subjects": 0, "fair_epochs": 0, "fair_ensemble": 0,
            "sweep_repeats": 1, "sweep_epochs": 0}


class ConfigError(ValueError):
    """A study configuration names an unknown setting or gives one a wrong value."""


def _kind(hint, plural: bool = False) -> str:
    """A type hint as a configuration file's author reads it."""
    if typing.get_origin(hint) is tuple:
        return f"{'lists' if plural else 'a list'} of {_kind(typing.get_args(hint)[0], True)}"
    return {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
            float: ("a number", "numbers"), str: ("a string", "strings")}[hint][plural]


def _coerce(value, hint, key: str, source: str):
    """`value` as the type `hint`, or a ConfigError naming the key and the type expected."""
    wrong = ConfigError(f"{source}: {key} must be {_kind(hint)}, got {value!r}.")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise wrong
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is float:
        try:  # YAML reads 1e-4 (no dot) as a string
            return float(value) if not isinstance(value, bool) else float("")
        except (TypeError, ValueError):
            raise wrong from None
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise wrong
    return value


def profile_from_settings(settings: Mapping, source: str = "study configuration") -> Profile:
    """A profile that extends a named one (`extends: quick`) with some settings changed.

    Parameters
    ----------
    settings : mapping
        `extends` (a profile name) and any of `Profile`'s fields except `name`.
    source : str
        Where the settings come from (a file name), for the errors.

    Returns
    -------
    Profile
        Named after the profile it extends; `Profile.label` tells it apart when a setting
        differs.
    """
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{source}: the profile settings must be a mapping, got "
                          f"{settings!r}.")
    hints = typing.get_type_hints(Profile)
    valid = ["extends", *(f.name for f in fields(Profile) if f.name != "name")]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {unknown}; valid settings are "
                          f"{valid}.")
    if "extends" not in settings:
        raise ConfigError(f"{source}: extends is missing; name the profile these settings "
                          f"change, one of {sorted(PROFILES)}.")
    base = settings["extends"]
    if base not in PROFILES:
        raise ConfigError(f"{source}: extends must be one of {sorted(PROFILES)}, got "
                          f"{base!r}.")
    changes = {k: _coerce(v, hints[k], k, source) for k, v in settings.items()
               if k != "extends"}
    for k, v in changes.items():
        if k in _MINIMUM and v < _MINIMUM[k]:
            raise ConfigError(f"{source}: {k} must be at least {_MINIMUM[k]}, got {v}.")
    for k in ("grid_mm", "sweep_grid_mm"):
        if changes.get(k, 1.0) <= 0:
            raise ConfigError(f"{source}: {k} must be positive, got {changes[k]}.")
    if any(n < 4 for n in changes.get("sweep_sizes", ())):
        raise ConfigError(f"{source}: sweep_sizes must be at least 4 subjects each, got "
                          f"{list(changes['sweep_sizes'])}.")
    if any(s < 0 for s in changes.get("sweep_scales", ())):
        raise ConfigError(f"{source}: sweep_scales must be 0 or more, got "
                          f"{list(changes['sweep_scales'])}.")
    if changes.get("precision", PRECISIONS[0]) not in PRECISIONS:
        raise ConfigError(f"{source}: precision must be one of {list(PRECISIONS)}, got "
                          f"{changes['precision']!r}.")
    from .maps import MAPS

    for k in ("cnn_map_sets", "fusion_maps"):
        named = [m for v in changes.get(k, ()) for m in (v if isinstance(v, tuple) else (v,))]
        bad = sorted(set(named) - set(MAPS))
        if bad:
            raise ConfigError(f"{source}: {k} names unknown map(s) {bad}; maps are {MAPS}.")
    return replace(PROFILES[base], **changes)


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
    """Where a profile's synthetic cohort, array cache and results live, and the sweep's
    cohorts (one folder per cell, named by its settings, shared by every profile)."""
    p = get_profile(profile)
    root = project_root() if root is None else Path(root)
    cohort = {k: v for k, v in p.changed_settings().items() if k in COHORT_SETTINGS}
    return {
        "root": root,
        "cohort": root / "data" / (f"synthetic-{p.name}" if not cohort
                                   else f"synthetic-{p.name}-{config_hash(cohort)[:8]}"),
        "cache": root / "cache",
        "sweep": root / "data" / "sweep",
        "results": root / "results" / p.label,
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


#: the keys of a study configuration file: the parameters every chapter takes
STUDY_CONFIG_KEYS = ("profile", "cohort_dir", "results_dir")


@dataclass(frozen=True)
class StudyConfig:
    """A study configuration file, read and checked: a profile and where the data live."""

    profile: Profile
    #: the `profile` entry as written (a name or settings that extend one)
    settings: str | dict
    cohort_dir: Path | None = None
    results_dir: Path | None = None

    def parameters(self) -> dict:
        """The chapters' parameters, as papermill passes them."""
        out: dict = {"profile": self.settings}
        for k in ("cohort_dir", "results_dir"):
            if getattr(self, k) is not None:
                out[k] = str(getattr(self, k))
        return out


def read_study_config(path: str | Path) -> StudyConfig:
    """Read a study configuration file: YAML whose keys are the chapters' parameters.

    `profile` is a profile name or the settings that change one (`extends: quick` plus any
    `Profile` field); `cohort_dir` and `results_dir` are optional paths, relative ones
    taken from the file's folder. The same file works as papermill's parameters
    (`papermill chapter.ipynb out.ipynb -f FILE`, where relative paths are taken from
    the working directory).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    StudyConfig
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study configuration file.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or "profile" not in data:
        raise ConfigError(f"{path}: a study configuration is a mapping with a profile entry "
                          "(a profile name, or `extends: NAME` plus the settings to change).")
    unknown = sorted(set(data) - set(STUDY_CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys are "
                          f"{list(STUDY_CONFIG_KEYS)} (profile settings go under profile).")
    settings = data["profile"]
    profile = (profile_from_settings(settings, f"{path}: profile") if isinstance(settings, dict)
               else _named(settings, path))
    dirs = {}
    for k in ("cohort_dir", "results_dir"):
        value = data.get(k)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {k} must be a string (a folder), got {value!r}.")
        dirs[k] = None if value is None else (path.parent / value).resolve()
    return StudyConfig(profile=profile, settings=settings, **dirs)


def _named(name, path: Path) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"{path}: profile must be one of {sorted(PROFILES)} or a mapping "
                          f"that extends one, got {name!r}.")
    return PROFILES[name]
