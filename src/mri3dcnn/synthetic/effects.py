"""What differs between patients and controls: regions with a target effect size, and how
patients vary around it.

Effects are stated as population Cohen's d of a region's mean map value (site, age, sex and
head size adjusted), the unit the meta-analyses report, not as a percentage change of a voxel: the
generator turns each d into an amplitude (see `generator.calibrate`). Patients are
heterogeneous: a share carries no change at all, the others follow one of a few latent
patterns with a severity of their own, so the same group difference can be carried by
patients who differ from each other as much as from controls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from ..maps import MAPS

#: the effects file the default cohort is built from
DEFAULT_EFFECTS_FILE = Path(__file__).with_name("effects.yaml")
#: the template each map's region masks are drawn in unless a region names another
DEFAULT_TISSUE = {"gm": "gm", "wm": "wm", "fa": "wm", "md": "brain"}
TISSUES = ("gm", "wm", "csf", "brain")


@dataclass(frozen=True)
class Region:
    """A planted group difference on one map.

    With `centers`, the change is a smooth bump (1 at each centre, fading to 0 at
    `radius_mm`) and the region is those spheres inside `tissue`; without, it is uniform
    over the brain and the region is the whole `tissue` (a diffuse change).
    `d` is the target population Cohen's d of the region mean, patients minus controls.
    """

    name: str
    map: str
    d: float
    centers: tuple[tuple[float, float, float], ...] = ()
    radius_mm: float = 10.0
    tissue: str = ""

    def __post_init__(self) -> None:
        if self.map not in MAPS:
            raise ValueError(f"Region {self.name!r}: map {self.map!r} is not one of {MAPS}.")
        if self.radius_mm <= 0:
            raise ValueError(f"Region {self.name!r}: radius_mm must be positive.")
        if any(len(c) != 3 for c in self.centers):
            raise ValueError(f"Region {self.name!r}: each centre needs three MNI coordinates.")
        if not self.tissue:
            object.__setattr__(self, "tissue", DEFAULT_TISSUE[self.map])
        if self.tissue not in TISSUES:
            raise ValueError(f"Region {self.name!r}: tissue {self.tissue!r} is not one of "
                             f"{TISSUES}.")

    @property
    def diffuse(self) -> bool:
        return not self.centers


@dataclass(frozen=True)
class Subtype:
    """A latent pattern: which regions change in the patients who follow it, and how much
    (loading 1 = full strength, 0 = unchanged; regions not named load 0)."""

    name: str
    share: float
    loadings: dict[str, float]


@dataclass(frozen=True)
class Confounds:
    """Ways a cohort can let a model cheat; both 0 (off) by default."""

    #: patient share runs from 0.5 + x at the first site to 0.5 - x at the last
    site_imbalance: float = 0.0
    #: patients are this many years older than controls on average
    age_difference_years: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.site_imbalance < 0.5:
            raise ValueError("confounds.site_imbalance must be in [0, 0.5).")


@dataclass(frozen=True)
class Effects:
    """Every planted difference and the heterogeneity of patients."""

    regions: tuple[Region, ...]
    p_unaffected: float = 0.25
    severity_cv: float = 0.5
    region_spread: float = 0.3
    subtypes: tuple[Subtype, ...] = ()
    confounds: Confounds = field(default_factory=Confounds)

    def __post_init__(self) -> None:
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ValueError(f"Region names must be unique, got {names}.")
        if not 0.0 <= self.p_unaffected < 1.0:
            raise ValueError("p_unaffected must be in [0, 1).")
        for s in self.subtypes:
            unknown = set(s.loadings) - set(names)
            if unknown:
                raise ValueError(f"Subtype {s.name!r} loads unknown regions {sorted(unknown)}.")
        if self.subtypes and abs(sum(s.share for s in self.subtypes) - 1.0) > 1e-6:
            raise ValueError("Subtype shares must sum to 1.")

    @property
    def patterns(self) -> tuple[Subtype, ...]:
        """The subtypes, or one pattern loading every region fully when none are given."""
        if self.subtypes:
            return self.subtypes
        return (Subtype("all", 1.0, {r.name: 1.0 for r in self.regions}),)

    def loadings(self) -> np.ndarray:
        """Loadings as an array (pattern x region)."""
        return np.array([[p.loadings.get(r.name, 0.0) for r in self.regions]
                         for p in self.patterns], float)

    def scaled(self, factor: float) -> Effects:
        """Every target d times `factor` (0: the null cohort)."""
        return replace(self, regions=tuple(replace(r, d=r.d * factor) for r in self.regions))

    def null(self) -> Effects:
        """The same regions with every target d at zero: the null cohort."""
        return self.scaled(0.0)

    def as_dict(self) -> dict:
        return asdict(self)


def draw_strengths(eff: Effects, n: int, rng: np.random.Generator, stratified: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-region strengths of `n` patients (n x region, mean about 1 over affected ones)
    and each patient's pattern index (-1: unaffected).

    `stratified` draws a cohort as a stratified sample of the same population: pattern
    counts follow the shares exactly (rounded, in random order) and severities are drawn
    one per quantile stratum, so the realised group difference strays less from its
    target than independent draws would let it.
    """
    from scipy import stats

    shares = np.array([p.share for p in eff.patterns])
    shares = shares / shares.sum()
    n_none = int(round(eff.p_unaffected * n)) if stratified else 0
    if stratified:
        counts = np.floor(shares * (n - n_none)).astype(int)
        rest = rng.choice(len(shares), size=n - n_none - counts.sum(), replace=False,
                          p=shares) if n - n_none - counts.sum() else []
        counts[np.asarray(rest, int)] += 1
        pattern = rng.permutation(np.concatenate([np.full(n_none, -1),
                                                  np.repeat(np.arange(len(shares)), counts)]))
    else:
        pattern = rng.choice(len(shares), size=n, p=shares)
        pattern[rng.uniform(size=n) < eff.p_unaffected] = -1
    cv = eff.severity_cv
    if cv <= 0:
        severity = np.ones(n)
    elif stratified:
        u = (rng.permutation(n) + rng.uniform(size=n)) / n
        severity = stats.gamma.ppf(u, 1.0 / cv**2, scale=cv**2)
    else:
        severity = rng.gamma(1.0 / cv**2, cv**2, size=n)
    sd = eff.region_spread
    spread = np.exp(sd * rng.standard_normal((n, len(eff.regions))) - sd**2 / 2)
    load = np.vstack([eff.loadings(), np.zeros(len(eff.regions))])[pattern]
    return severity[:, None] * load * spread, pattern


def strength_moments(eff: Effects, n: int = 200_000, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the per-region strengths over all patients (affected or
    not), by Monte Carlo with a fixed seed so that calibration is deterministic."""
    s, _ = draw_strengths(eff, n, np.random.default_rng(seed))
    return s.mean(axis=0), np.cov(s, rowvar=False).reshape(len(eff.regions), -1)


def load_effects(path: str | Path | None = None) -> Effects:
    """Read an effects YAML; None reads the default (`effects.yaml` beside this module)."""
    path = DEFAULT_EFFECTS_FILE if path is None else Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"Cannot read effects file {path}: {err}") from err
    if not isinstance(spec, dict) or "regions" not in spec:
        raise ValueError(
            f"Effects file {path} needs a 'regions' list of "
            "{name, map, d, centers: [[x, y, z], ...], radius_mm, tissue}."
        )
    try:
        regions = tuple(_region(r) for r in spec["regions"])
        subtypes = tuple(Subtype(str(s["name"]), float(s["share"]),
                                 {str(k): float(v) for k, v in s["loadings"].items()})
                         for s in spec.get("subtypes") or ())
        confounds = Confounds(**{k: float(v) for k, v in (spec.get("confounds") or {}).items()})
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"Effects file {path}: each region needs name, map and d (and centers with "
            f"radius_mm, or none for a diffuse change); each subtype name, share and "
            f"loadings; confounds takes site_imbalance and age_difference_years ({err})."
        ) from err
    except ValueError as err:
        raise ValueError(f"Effects file {path}: {err}") from err
    defaults = Effects(regions=())
    return Effects(
        regions=regions, subtypes=subtypes, confounds=confounds,
        **{k: float(spec.get(k, getattr(defaults, k)))
           for k in ("p_unaffected", "severity_cv", "region_spread")},
    )


def _region(r: dict) -> Region:
    if "effect" in r and "d" not in r:
        raise ValueError(f"region {r.get('name')!r}: 'effect' (a relative change) is now 'd', "
                         "the population Cohen's d of the region mean.")
    centers = r.get("centers") or ([r["center"]] if "center" in r else [])
    return Region(name=str(r["name"]), map=str(r["map"]), d=float(r["d"]),
                  centers=tuple(tuple(float(c) for c in xyz) for xyz in centers),
                  radius_mm=float(r.get("radius_mm", 10.0)), tissue=str(r.get("tissue", "")))


#: the default cohort's effects (read from `effects.yaml`)
DEFAULT_EFFECTS = load_effects()
