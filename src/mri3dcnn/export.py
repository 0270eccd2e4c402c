"""Trained models out: one folder a lab can apply to new subjects, and `predict` to do so.

`export_model` turns a stored fold model, or the ensemble of a repeat's fold models, into
a folder holding

- `model.keras`: raw maps in (one input per map, named after it), the patient score out;
  the intensity normalisation fitted on the training subjects is inside, as layers;
- `study.json`: the grid and maps the model expects, and where it came from;
- `MODEL_CARD.md`: the data it was trained on, its metrics with confidence intervals on
  the cross-validation and independent sets, intended use and limitations.

`predict` reads maps from a BIDS-derivatives folder, checks them against `study.json`,
resamples maps on another grid (and says so), and writes a BIDS-derivatives dataset:
per-subject scores as a table with its JSON sidecar, plus gradient saliency maps in the
subjects' folders on request.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_directory
from .cohort import CohortError, ambiguity_message, find_maps
from .crossval import CHAPTER_CNN, display_name, maps_label
from .maps import map_info
from .results import Record, ResultsStore, predictions_of
from .space import SPACE, brain_mask, study_grid, to_grid, to_image
from .stats import METRICS, bootstrap_ci, subject_level, summarise
from .volumes import VolumeError, load_checked

#: the version of the folder layout `predict` reads
FORMAT = 1
#: a subject with a score above this is predicted a patient, as in every stored record
THRESHOLD = 0.5


class ExportError(ValueError):
    """The model asked for is not stored, or the folder or maps handed to predict are not
    what the model needs."""


# --- choosing and exporting -------------------------------------------------------------

def select_records(store: ResultsStore, family: str, maps: list[str] | tuple[str, ...],
                   fusion: str | None = None, protocol: str = "inner", repeat: int = 0,
                   cohort: str | None = None, fold: int | None = None) -> list[Record]:
    """The stored fold models of one CNN (one repeat), in fold order, or one of them.

    Parameters
    ----------
    store : ResultsStore
        The results store the study wrote.
    family, maps, fusion, protocol, repeat
        Which model: `fusion` defaults to `branch` for several maps, `none` for one.
    cohort : str, optional
        The cohort fingerprint, needed only where the store holds fits on several cohorts.
    fold : int, optional
        Only this fold's model (default: every fold, for the ensemble).

    Returns
    -------
    list of Record
    """
    maps = list(maps)
    fusion = fusion or ("branch" if len(maps) > 1 else "none")
    cnn = [r for r in store.records(CHAPTER_CNN) if r.key["variant"] == "none"
           and r.key["protocol"] == protocol]
    found = [r for r in cnn if r.key["family"] == family and r.maps == maps
             and r.key["fusion"] == fusion and int(r.key["repeat"]) == repeat
             and (cohort is None or r.key["config"].get("cohort") == cohort)]
    if not found:
        stored = sorted({f"{display_name(r.key)} on {maps_label(r.key)} (fusion "
                         f"{r.key['fusion']}, repeat {r.key['repeat']})" for r in cnn})
        raise ExportError(f"{store.root}: no stored {family} on {'+'.join(maps)} (fusion "
                          f"{fusion}, protocol {protocol}, repeat {repeat}). Stored CNNs: "
                          f"{stored or 'none; run the CNN chapters first'}.")
    cohorts = sorted({r.key["config"].get("cohort") for r in found})
    if len(cohorts) > 1:
        raise ExportError(f"{store.root}: {family} on {'+'.join(maps)} was fitted on "
                          f"several cohorts {cohorts}; choose one with --cohort.")
    found = sorted(found, key=lambda r: int(r.key["fold"]))
    if fold is None:
        return found
    chosen = [r for r in found if int(r.key["fold"]) == fold]
    if not chosen:
        raise ExportError(f"{store.root}: no stored fold {fold} of {family} on "
                          f"{'+'.join(maps)}; stored folds: "
                          f"{[int(r.key['fold']) for r in found]}.")
    return chosen


def _fold_model(record: Record, inputs: dict, tag: str):
    """A stored fit applied to raw inputs: its normaliser's layers, then its network."""
    import keras

    from .models.export_layers import PatientScore
    from .saliency import load_fit

    net, norm = load_fit(record)
    net.name = f"{net.name}_{tag}"
    maps = record.maps
    z = {m: norm.as_layer(m, name=f"standardise_{m}_{tag}")(inputs[m]) for m in maps}
    names = [t.name for t in net.inputs]
    if len(names) == 1 and len(maps) > 1:  # channel fusion: maps stacked as channels
        x = keras.layers.Concatenate(axis=-1, name=f"stack_{tag}")([z[m] for m in maps])
    else:
        x = [z[n] for n in names] if len(names) > 1 else z[names[0]]
    return PatientScore(name=f"score_{tag}")(net(x))


def build_exported(records: list[Record]):
    """One Keras model from fold records: raw maps in, the patient score (n, 1) out; an
    ensemble averages the fold models' scores, as the study scores the independent set."""
    import keras

    maps = records[0].maps
    shape = study_grid(float(records[0].key["config"]["grid_mm"]))[1]
    inputs = {m: keras.Input(shape=(*shape, 1), name=m) for m in maps}
    scores = [_fold_model(r, inputs, f"fold{r.key['fold']}") for r in records]
    out = scores[0] if len(scores) == 1 else keras.layers.Average(name="ensemble")(scores)
    return keras.Model([inputs[m] for m in maps], out, name="mri3dcnn_export")


def performance(records: list[Record], n_boot: int = 1000) -> pd.DataFrame:
    """Metrics with 95 % intervals per evaluation set, from the stored predictions, by the
    test that fits what varies: a fold model, and the ensemble on the independent site,
    are fixed models (subject bootstrap); the ensemble's cross-validation row estimates
    the training procedure (`stats.summarise`: corrected repeated-CV t-test on folds)."""
    preds = predictions_of(records)
    columns = ["set", "n", *(f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")),
               "test"]
    if len(records) > 1:
        return summarise(preds, n_boot=n_boot)[columns].reset_index(drop=True)
    rows = []
    for part in sorted(preds["set"].unique()):
        sub = subject_level(preds, part)
        ci = bootstrap_ci(sub["y_true"], sub["score"], sub["pred"], n_boot=n_boot)
        rows.append({"set": part, "n": len(sub),
                     **{f"{m}{s}": ci.loc[m, c] for m in METRICS
                        for s, c in (("", "estimate"), ("_low", "ci_low"),
                                     ("_high", "ci_high"))},
                     "test": f"subject bootstrap ({n_boot}), model fixed"})
    return pd.DataFrame(rows, columns=columns)


def _description(records: list[Record]) -> dict:
    """study.json: what a new subject's maps must be, and where the model came from."""
    key = records[0].key
    grid_mm = float(key["config"]["grid_mm"])
    affine, shape = study_grid(grid_mm)
    train = sorted({s for r in records for s in r.key["config"]["train"]})
    seen = sorted(set(train) | {s for r in records for s in r.predictions.participant_id})
    return {
        "format": FORMAT,
        "model": display_name(key), "family": key["family"], "maps": list(key["maps"]),
        "fusion": key["fusion"], "protocol": key["protocol"], "repeat": int(key["repeat"]),
        "folds": [int(r.key["fold"]) for r in records],
        "ensemble": len(records) > 1,
        "grid_mm": grid_mm, "shape": list(shape), "affine": affine.tolist(), "space": SPACE,
        "threshold": THRESHOLD,
        "output": "patient score p(patient) / (p(patient) + p(control)), one per subject",
        "n_params": int(sum(r.info.get("n_params", 0) for r in records)),
        "cohort": key["config"].get("cohort"), "n_subjects": len(seen),
        "n_training_subjects": len(train),
        "profile": key["config"].get("profile"), "fit": key["config"].get("estimator"),
        "records": [r.info["hash"] for r in records],
    }


def _cell(row, metric: str) -> str:
    est, lo, hi = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
    return "n/a" if pd.isna(est) else f"{est:.3f} [{lo:.3f}, {hi:.3f}]"


def model_card(desc: dict, perf: pd.DataFrame) -> str:
    """The model card as Markdown: every number from `study.json` and the stored records."""
    what = (f"the mean score of {len(desc['folds'])} fold models (folds "
            f"{', '.join(map(str, desc['folds']))} of repeat {desc['repeat']})"
            if desc["ensemble"] else f"the model of fold {desc['folds'][0]} of repeat "
            f"{desc['repeat']}")
    maps = ", ".join(f"{m} ({map_info(m).label})" for m in desc["maps"])
    names = {"cv": "cross-validation (held-out folds)",
             "independent": "independent site (never trained on)"}
    header = ("| set | n | " + " | ".join(m.replace("_", " ") for m in METRICS)
              + " | intervals from |")
    table = [header, "|" + "---|" * (len(METRICS) + 3)]
    for _, row in perf.iterrows():
        table.append(f"| {names.get(row['set'], row['set'])} | {row['n']} | "
                     + " | ".join(_cell(row, m) for m in METRICS) + f" | {row['test']} |")
    profile = desc.get("profile") or {}
    fit = desc.get("fit", {}).get("spec", {})
    return "\n".join([
        f"# Model card: {desc['model']} on {'+'.join(desc['maps'])}",
        "",
        "**For research only. This is not a medical device and must not be used to "
        "diagnose, screen or treat anyone.**",
        "",
        "## Model",
        f"- A 3D CNN of the {desc['family']} family, {what}; fusion of maps: "
        f"{desc['fusion']}; epoch chosen by the `{desc['protocol']}` protocol.",
        f"- Input: {maps}, one input per map named after it, in {desc['space']} on the "
        f"{desc['grid_mm']:g} mm study grid of shape {'x'.join(map(str, desc['shape']))}. "
        "Raw map values: the voxel-wise normalisation fitted on the training subjects is "
        "inside the model.",
        f"- Output: the {desc['output']}; a score above {desc['threshold']} predicts a "
        f"patient. {desc['n_params']:,} trained parameters.",
        "",
        "## Training data",
        f"- Cohort fingerprint `{desc['cohort']}` (hash of the participants table and every "
        f"map file): {desc['n_subjects']} subjects in the study, "
        f"{desc['n_training_subjects']} of them in the training folds.",
        f"- Profile `{profile.get('name')}`: {profile.get('n_folds')}-fold cross-validation x "
        f"{profile.get('n_repeats')} repeat(s), split seed {profile.get('cohort_seed')}; up "
        f"to {fit.get('epochs')} epochs, batch {fit.get('batch_size')}, early-stopping "
        f"patience {fit.get('patience')}, augmentation {'on' if fit.get('augment') else 'off'}"
        f", seed {fit.get('seed')}.",
        "",
        "## Performance",
        "Metrics with 95 % confidence intervals, computed from the stored predictions; each "
        "row names the test behind its intervals. " + (
            "The cross-validation row scores every fold model on its own held-out fold: it "
            "estimates the training procedure, not the ensemble." if desc["ensemble"]
            else ""),
        "",
        *table,
        "",
        "## Intended use",
        "Research on group differences between patients with schizophrenia and controls in "
        "maps prepared as the study's were (`mri3dcnn prepare` or an equivalent pipeline), "
        "and reproduction of this study's results.",
        "",
        "## Limitations",
        "- Not a clinical device; not validated for diagnosis of individuals.",
        "- Trained on one cohort; scanners, sites, preprocessing or populations unlike it "
        "may shift the scores in ways these metrics do not show.",
        "- Scores are not calibrated probabilities of disease; the threshold was not tuned.",
        "- Maps on another grid are resampled, which changes the inputs slightly.",
        "",
    ])


def export_model(records: list[Record], out: str | Path, n_boot: int = 1000) -> Path:
    """Write one model folder (model.keras, study.json, MODEL_CARD.md) atomically.

    Parameters
    ----------
    records : list of Record
        One fold record (that fold model) or several of one repeat (their ensemble),
        from `select_records`.
    out : str or Path
        The folder to write; replaced if it exists.
    n_boot : int
        Bootstrap resamples of the model card's intervals.

    Returns
    -------
    Path
        The folder.
    """
    if not records:
        raise ExportError("Nothing to export: no fold records were given.")
    if len({(r.key["family"], maps_label(r.key), r.key["fusion"], r.key["repeat"])
            for r in records}) > 1:
        raise ExportError("An ensemble joins the folds of one model and one repeat; these "
                          "records are of several.")
    desc = _description(records)
    model = build_exported(records)
    out = Path(out)
    with atomic_directory(out) as tmp:
        model.save(tmp / "model.keras")
        (tmp / "study.json").write_text(json.dumps(desc, indent=2))
        (tmp / "MODEL_CARD.md").write_text(model_card(desc, performance(records, n_boot)))
    return out


# --- predicting ---------------------------------------------------------------------------

def load_exported(model_dir: str | Path) -> tuple:
    """The model and its study.json from an exported folder."""
    from .models import load_model

    model_dir = Path(model_dir)
    for name in ("model.keras", "study.json"):
        if not (model_dir / name).is_file():
            raise ExportError(f"{model_dir / name} is missing: {model_dir} is not a folder "
                              "`mri3dcnn export` wrote; export the model again.")
    desc = json.loads((model_dir / "study.json").read_text())
    if desc.get("format") != FORMAT:
        raise ExportError(f"{model_dir / 'study.json'}: format {desc.get('format')}, this "
                          f"version reads {FORMAT}; export the model again.")
    return load_model(model_dir / "model.keras"), desc


def _subjects(cohort_dir: Path) -> list[str]:
    """Subjects listed in participants.tsv, else every sub-* folder."""
    tsv = cohort_dir / "participants.tsv"
    if tsv.exists():
        table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str})
        if "participant_id" not in table.columns:
            raise ExportError(f"{tsv}: column participant_id is missing; add it.")
        return list(table["participant_id"])
    subs = sorted(p.name for p in cohort_dir.glob("sub-*") if p.is_dir())
    if not subs:
        raise ExportError(f"{cohort_dir}: no participants.tsv and no sub-* folders; point "
                          "predict at a BIDS-derivatives folder of maps.")
    return subs


def read_maps(cohort_dir: str | Path, desc: dict, choose: dict[str, str] | None = None
              ) -> tuple[list[str], dict[str, np.ndarray], dict[str, dict[str, str]]]:
    """Every subject's maps on the model's grid, masked as in training.

    Returns the subjects, one array per map of shape (n, X, Y, Z), and per subject a note
    for each map whose file had to be resampled ({subject: {map: note}}).
    """
    cohort_dir = Path(cohort_dir)
    grid_mm = float(desc["grid_mm"])
    affine, shape = study_grid(grid_mm)
    mask = brain_mask(grid_mm)
    subs = _subjects(cohort_dir)
    arrays = {m: np.zeros((len(subs), *shape), np.float32) for m in desc["maps"]}
    notes: dict[str, dict[str, str]] = {sub: {} for sub in subs}
    for i, sub in enumerate(subs):
        for m in desc["maps"]:
            found = find_maps(cohort_dir / sub, m, sub, choose) if (cohort_dir / sub).is_dir() \
                else []
            if not found:
                info = map_info(m)
                raise ExportError(
                    f"Subject {sub}: no {m} map under {cohort_dir / sub}; the model needs "
                    f"{'+'.join(desc['maps'])}. Add {info.datatype}/{sub}_space-{SPACE}_"
                    f"{info.written}.nii.gz (or remove {sub} from participants.tsv).")
            if len(found) > 1:
                raise ExportError(ambiguity_message(sub, m, found))
            path = found[0][0]
            img = load_checked(path, sub, m)
            if img.shape != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-3):
                notes[sub][m] = (f"{path}: grid {img.shape} at "
                                 f"{np.abs(np.diag(img.affine)[:3]).round(2).tolist()} mm "
                                 f"resampled to the model's {'x'.join(map(str, shape))} "
                                 f"grid at {grid_mm:g} mm")
            arrays[m][i] = to_grid(img, grid_mm) * mask
    return subs, arrays, notes


#: the table `predict` writes at the root of its output dataset
PREDICTIONS = "predictions.tsv"


def _output_folder(out: Path) -> None:
    """Refuse an output that is a TSV name (the output is a folder) or a folder predict did
    not write, which writing would replace."""
    if out.suffix == ".tsv":
        raise ExportError(f"--out {out}: the output is a folder (a BIDS-derivatives dataset "
                          f"with {PREDICTIONS}, its sidecar and any saliency maps); use "
                          f"{out.with_suffix('')}.")
    if out.exists() and any(out.iterdir()) and not (out / PREDICTIONS).is_file():
        raise ExportError(f"{out} exists and is not an output of predict; it would be "
                          "replaced. Choose a new folder.")


def predict(model_dir: str | Path, cohort_dir: str | Path, out: str | Path,
            saliency: bool = False, choose: dict[str, str] | None = None) -> pd.DataFrame:
    """Score every subject of a cohort folder with an exported model.

    Parameters
    ----------
    model_dir : str or Path
        A folder `export_model` wrote.
    cohort_dir : str or Path
        BIDS-derivatives maps (participants.tsv optional; no group needed).
    out : str or Path
        The folder to write (replaced if predict wrote it before), a BIDS-derivatives
        dataset: `dataset_description.json`, `predictions.tsv` with its JSON sidecar
        describing each column and, on request, saliency maps in each subject's folder.
    saliency : bool
        Also write each subject's gradient saliency of the patient score, per map, as
        ``sub-<id>/anat/sub-<id>_space-<space>_res-<grid>_desc-gradient<MAP>_saliency
        .nii.gz`` with its sidecar.
    choose : dict, optional
        Entity values where subjects have several scans (`{"ses": "1"}`).

    Returns
    -------
    pandas.DataFrame
        `participant_id`, `probability` (the patient score), `predicted_group` and
        `resampled` (the maps resampled to the model's grid, or n/a); the notes on
        resampled files are in `.attrs["notes"]`.
    """
    from .derivatives import describe, write_table

    out = Path(out)
    _output_folder(out)
    model, desc = load_exported(model_dir)
    try:
        subs, arrays, notes = read_maps(cohort_dir, desc, choose)
    except (CohortError, VolumeError) as err:
        raise ExportError(str(err)) from None
    inputs = [arrays[m][..., None] for m in desc["maps"]]
    score = np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0],
                                     batch_size=32, verbose=0))[:, 0]
    table = pd.DataFrame({"participant_id": subs, "probability": score.astype(float),
                          "predicted_group": np.where(score > desc["threshold"], "patient",
                                                      "control"),
                          "resampled": [",".join(notes[s]) or None for s in subs]})
    columns = {
        "participant_id": {"Description": "subject, as in the cohort folder"},
        "probability": {"Description": desc["output"], "Units": "probability (0 to 1)"},
        "predicted_group": {"Description": f"patient when probability > {desc['threshold']}",
                            "Levels": {"patient": "schizophrenia", "control": "control"}},
        "resampled": {"Description": "maps of this subject that were on another grid and "
                                     "were resampled to the model's (comma-separated); n/a "
                                     "when none"},
    }
    with atomic_directory(out) as tmp:
        write_table(tmp / PREDICTIONS, table, columns)
        if saliency:
            write_saliency(model, desc, subs, arrays, tmp)
        describe(tmp, f"Predictions of {desc['model']} on {'+'.join(desc['maps'])}",
                 f"mri3dcnn predict{' --saliency' if saliency else ''} with the exported "
                 f"{desc['model']} (folds {desc['folds']}, repeat {desc['repeat']}) in "
                 f"{Path(model_dir).resolve()}", [cohort_dir, model_dir])
    table.attrs["notes"] = [n for s in subs for n in notes[s].values()]
    return table


def write_saliency(model, desc: dict, subs: list[str], arrays: dict[str, np.ndarray],
                   folder: Path) -> list[Path]:
    """Gradient saliency of the patient score per subject and map into the dataset
    `folder`, NIfTI with JSON sidecars (gradients with respect to the raw map values)."""
    from .derivatives import label, write_image
    from .maps import derivative_path
    from .saliency import gradient

    maps, grid_mm = list(desc["maps"]), float(desc["grid_mm"])
    written = []
    for i, sub in enumerate(subs):
        grads = gradient(model, {m: arrays[m][i:i + 1] for m in maps}, maps, target=0)
        for m in maps:
            rel = derivative_path(sub, f"desc-{label('gradient', m.upper())}_saliency.nii.gz",
                                  grid_mm, SPACE, map_info(m).datatype)
            written.append(write_image(folder, rel, to_image(grads[m][0], grid_mm), {
                "Description": f"gradient saliency of {desc['model']} for {sub}",
                "Method": "gradient", "Map": m, "Model": desc["model"],
                "Folds": desc["folds"], "Repeat": desc["repeat"],
                "Values": f"d(patient score)/d({m} value): how fast the score moves as the "
                          "raw map value at the voxel moves (the model's normalisation is "
                          "inside it)",
                "Units": f"patient score per unit of {m}",
                "Target": desc["output"]}))
    return written
