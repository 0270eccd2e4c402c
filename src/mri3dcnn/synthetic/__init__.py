"""A synthetic cohort with known ground truth, built offline from nilearn's MNI152 templates.

No MRI data set can be shared with the book, and the study's data were never released. A
cohort whose group differences are planted on purpose lets the book show what a paper
cannot: how close each model comes to the best achievable accuracy, and whether saliency
finds the regions that really differ. The defaults are as hard as the disorder: region
effects at the sizes large meta-analyses report, heterogeneous patients, anatomy and
scanners that vary.

- `effects`: what differs (regions with target d, patient patterns, confounds; YAML)
- `anatomy`: deformations, regional variation, smoothness, region shapes
- `generator`: simulation, calibration of amplitudes, BIDS writing
- `truth`: masks, latent patterns, features, realised d
- `oracle`: the CV oracle on a split plan, the Bayes ceiling, the strict bound
- `figures`: the voxel-wise effect map beside the planted regions
"""

from .anatomy import Anatomy
from .effects import DEFAULT_EFFECTS, Confounds, Effects, Region, Subtype, load_effects
from .generator import generate_cohort
from .oracle import bayes_ceiling, oracle_table, strict_bound
from .truth import (
    planted_masks,
    read_features,
    read_latent,
    read_truth,
    realised_d_table,
    region_peaks,
    truth_masks,
    voxelwise_d,
)

__all__ = [
    "DEFAULT_EFFECTS", "Anatomy", "Confounds", "Effects", "Region", "Subtype",
    "bayes_ceiling", "generate_cohort", "load_effects", "oracle_table", "planted_masks",
    "read_features", "read_latent", "read_truth", "realised_d_table", "region_peaks",
    "strict_bound",
    "truth_masks", "voxelwise_d",
]
