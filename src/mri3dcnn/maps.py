"""The one registry of the maps a study can use.

Every module that names, reads, writes, labels or displays a map asks this registry, so a
new map (or a new BIDS spelling of an old one) is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapInfo:
    """What the library knows about one kind of subject map."""

    name: str
    #: what figures and tables call it
    label: str
    #: BIDS datatype folder the writer uses (``anat`` or ``dwi``)
    datatype: str
    #: BIDS entities and suffix the writer uses after ``space-`` and ``res-``
    written: str
    #: file-name patterns the reader accepts (matched case-insensitively)
    patterns: tuple[str, ...]
    #: fixed display and 8-bit image range: tissue probabilities, FA in [0, 1]; MD in
    #: 10^-3 mm^2/s, where adult brain tissue and CSF stay below 3.5
    value_range: tuple[float, float]
    #: what the BIDS-entity reader accepts: alternatives of (suffix, {entity: value}); an
    #: empty suffix accepts any. Values compare case-insensitively.
    reads: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


REGISTRY: dict[str, MapInfo] = {
    "gm": MapInfo("gm", "grey matter", "anat", "label-GM_probseg",
                  ("*label-GM*_probseg.nii*", "*_desc-GM*.nii*"), (0.0, 1.0),
                  (("probseg", (("label", "GM"),)), ("", (("desc", "GM"),)))),
    "wm": MapInfo("wm", "white matter", "anat", "label-WM_probseg",
                  ("*label-WM*_probseg.nii*", "*_desc-WM*.nii*"), (0.0, 1.0),
                  (("probseg", (("label", "WM"),)), ("", (("desc", "WM"),)))),
    "fa": MapInfo("fa", "FA", "dwi", "model-DTI_param-FA_dwimap",
                  ("*param-FA*_dwimap.nii*", "*_desc-FA*.nii*", "*_FA.nii*"), (0.0, 1.0),
                  (("dwimap", (("param", "FA"),)), ("", (("desc", "FA"),)), ("FA", ()))),
    "md": MapInfo("md", "MD", "dwi", "model-DTI_param-MD_dwimap",
                  ("*param-MD*_dwimap.nii*", "*_desc-MD*.nii*", "*_MD.nii*"), (0.0, 3.5),
                  (("dwimap", (("param", "MD"),)), ("", (("desc", "MD"),)), ("MD", ()))),
}

#: every map name, in the order chapters show them
MAPS: tuple[str, ...] = tuple(REGISTRY)


def map_info(name: str) -> MapInfo:
    """The registry entry of `name`, with the valid names in the error."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown map {name!r}; valid maps are {MAPS}.") from None


def label(name: str) -> str:
    """Human label of a map; an unknown name is shown as it is."""
    return REGISTRY[name].label if name in REGISTRY else name


def derivative_path(subject: str | None, tail: str, grid_mm: float, space: str,
                    datatype: str = "anat", session: str | None = None) -> str:
    """Path of one file of a BIDS-derivatives dataset on the study grid: in the subject's
    (and session's) datatype folder, named ``sub-<id>_[ses-<s>_]space-<space>_res-<grid>_
    <tail>``; with no subject, a group-level file at the dataset root without ``sub-``."""
    res = f"res-{grid_mm:g}mm".replace(".", "p")
    name = f"space-{space}_{res}_{tail}"
    if subject is None:
        return name
    ses = f"ses-{session}" if session else ""
    folder = f"{subject}/{ses}/{datatype}" if ses else f"{subject}/{datatype}"
    return f"{folder}/{subject}_{ses + '_' if ses else ''}{name}"


def bids_name(subject: str, map_name: str, grid_mm: float, space: str,
              session: str | None = None) -> str:
    """Path of one map inside a subject folder, following BIDS-derivatives naming; with a
    session the file sits in its ``ses-`` folder and carries the entity."""
    info = map_info(map_name)
    path = derivative_path(subject, f"{info.written}.nii.gz", grid_mm, space, info.datatype,
                           session)
    return path.removeprefix(f"{subject}/")
