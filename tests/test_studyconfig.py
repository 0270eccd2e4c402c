"""Study configuration files: checked settings that extend a profile and key the results."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from mri3dcnn.cli import main
from mri3dcnn.config import (
    PROFILES,
    ConfigError,
    config_hash,
    default_paths,
    get_profile,
    read_study_config,
)
from mri3dcnn.crossval import CHAPTER_SVM

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_setting_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['epoch'\]; valid settings "
                                          r"are \[.*'epochs'"):
        get_profile({"extends": "quick", "epoch": 5})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("epochs", "5", "epochs must be an integer, got '5'"),
    ("epochs", True, "epochs must be an integer, got True"),
    ("augment", 1, "augment must be true or false"),
    ("grid_mm", "fine", "grid_mm must be a number"),
    ("svm_C", 0.1, "svm_C must be a list of numbers"),
    ("cnn_map_sets", ["gm"], r"cnn_map_sets\[0\] must be a list of strings"),
    ("fusion_maps", ["gm", "t2"], r"fusion_maps names unknown map\(s\) \['t2'\]"),
    ("n_folds", 1, "n_folds must be at least 2"),
    ("precision", "float16", r"precision must be one of \['float32', 'mixed_float16'"),
])
def test_a_wrong_value_names_the_key_and_what_it_must_be(key, value, message):
    with pytest.raises(ConfigError, match=message):
        get_profile({"extends": "tiny", key: value})


def test_settings_must_name_the_profile_they_extend():
    with pytest.raises(ConfigError, match=r"extends is missing.*\['full', 'quick', 'tiny'\]"):
        get_profile({"epochs": 3})
    with pytest.raises(ConfigError, match="extends must be one of"):
        get_profile({"extends": "huge"})


def test_a_file_error_names_the_file_and_the_key(tmp_path):
    bad = _write(tmp_path / "study.yaml", {"profile": "quick", "epochs": 3})
    with pytest.raises(ConfigError, match=r"study.yaml: unknown key\(s\) \['epochs'\]; valid "
                                          r"keys are \['profile', 'cohort_dir', 'results_dir'\]"):
        read_study_config(bad)
    nested = _write(tmp_path / "nested.yaml", {"profile": {"extends": "quick", "epochs": "x"}})
    with pytest.raises(ConfigError, match="nested.yaml: profile: epochs must be an integer"):
        read_study_config(nested)
    with pytest.raises(SystemExit, match="mri3dcnn run: .*nested.yaml: profile: epochs"):
        main(["run", "--config", str(nested)])


def test_a_file_extends_a_profile_and_resolves_its_folders(tmp_path):
    f = _write(tmp_path / "study.yaml", {"profile": {"extends": "quick", "epochs": 5,
                                                     "svm_C": [0.01, "1e-3"]},
                                         "cohort_dir": "data/mine"})
    cfg = read_study_config(f)
    assert cfg.profile.epochs == 5 and cfg.profile.svm_C == (0.01, 0.001)
    assert cfg.profile.n_subjects == PROFILES["quick"].n_subjects
    assert cfg.cohort_dir == tmp_path / "data" / "mine" and cfg.results_dir is None
    params = cfg.parameters()
    assert get_profile(params["profile"]) == cfg.profile
    assert params["cohort_dir"] == str(tmp_path / "data" / "mine")


def _notebook(path):
    """A chapter as the notebook papermill reads."""
    import jupytext
    import nbformat

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    nb.metadata["papermill"] = {}
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    return nb


@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS.glob("*.py")),
                         ids=lambda p: p.stem)
def test_papermill_help_documents_every_parameter(chapter):
    from papermill.inspection import _infer_parameters

    params = _infer_parameters(_notebook(chapter))
    assert {"profile", "cohort_dir", "results_dir"} <= {p.name for p in params}
    assert [p.name for p in params if not p.help] == []


def test_papermill_reads_the_same_file_as_chapter_parameters(tmp_path):
    """`papermill chapter.ipynb out.ipynb -f study.yaml` injects the file's keys; the
    chapter's parameters then open the same profile as `--config study.yaml`."""
    from papermill.parameterize import parameterize_notebook

    f = _write(tmp_path / "study.yaml", {"profile": {"extends": "tiny", "epochs": 2},
                                         "results_dir": "/tmp/elsewhere"})
    nb = _notebook(NOTEBOOKS / "04_sequential.py")
    nb = parameterize_notebook(nb, yaml.safe_load(f.read_text()))
    first = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.tags)
    assert "injected-parameters" in nb.cells[first + 1].metadata.tags
    namespace: dict = {}
    for cell in nb.cells[first:first + 2]:
        exec(cell.source, namespace)
    assert get_profile(namespace["profile"]) == read_study_config(f).profile
    assert namespace["results_dir"] == "/tmp/elsewhere" and namespace["cohort_dir"] is None


def test_results_and_cohort_folders_follow_the_settings(tmp_path):
    assert default_paths({"extends": "quick"}, tmp_path) == default_paths("quick", tmp_path)
    fewer = default_paths({"extends": "quick", "n_subjects": 100}, tmp_path)
    longer = default_paths({"extends": "quick", "epochs": 99}, tmp_path)
    assert fewer["cohort"] != default_paths("quick", tmp_path)["cohort"]
    assert longer["cohort"] == default_paths("quick", tmp_path)["cohort"]
    assert len({p["results"] for p in (fewer, longer, default_paths("quick", tmp_path))}) == 3


def test_a_configuration_changes_a_result_key_iff_it_changes_a_setting_of_that_result(
        tiny_cohort, tmp_path, monkeypatch):
    from mri3dcnn.study import Study

    monkeypatch.setenv("MRI3DCNN_HOME", str(tmp_path))

    def keys(profile):
        study = Study.open(profile, tiny_cohort, tmp_path / "results", maps=("gm",))
        X = np.zeros((len(study.ids), 3))
        models = {"cnn": study.cnn("sequential_1", ("gm",)),
                  "svm": study.sklearn(CHAPTER_SVM, "svm_linear", ["gm"], study.svm(), X,
                                       "voxels")}
        return {k: [config_hash(key) for key in study.unit_keys(m)] for k, m in models.items()}

    tiny = keys("tiny")
    assert keys({"extends": "tiny"}) == tiny
    assert keys({"extends": "tiny", "epochs": PROFILES["tiny"].epochs}) == tiny
    longer = keys({"extends": "tiny", "epochs": 5})
    assert longer["svm"] == tiny["svm"]
    assert not set(longer["cnn"]) & set(tiny["cnn"])
    grid = keys({"extends": "tiny", "svm_C": [0.5]})
    assert grid["cnn"] == tiny["cnn"] and not set(grid["svm"]) & set(tiny["svm"])
    folds = keys({"extends": "tiny", "n_folds": 3})
    assert not set(folds["cnn"]) & set(tiny["cnn"]) and not set(folds["svm"]) & set(tiny["svm"])


@pytest.mark.parametrize("command", ["run", "book"])
def test_book_and_run_hand_the_configuration_to_every_chapter(tmp_path, monkeypatch, command):
    import mri3dcnn.runner as runner

    calls = []
    monkeypatch.setattr(runner, "execute_book", lambda profile, chapters=None, **kw:
                        calls.append((profile, kw["extra_parameters"])) or [])
    f = _write(tmp_path / "study.yaml", {"profile": {"extends": "tiny", "epochs": 2},
                                         "cohort_dir": "maps"})
    main([command, "--config", str(f), "--profile", "full", "--chapters", "01_data",
          *(["--no-build"] if command == "book" else [])])
    cfg = read_study_config(f)
    assert calls == [(cfg.profile, cfg.parameters())]
    assert calls[0][1]["cohort_dir"] == str(tmp_path / "maps")
