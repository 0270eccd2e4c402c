"""The command line: synthetic cohorts and model summaries."""

from mri3dcnn.cli import main
from mri3dcnn.synthetic import read_truth


def test_synth(tmp_path, capsys):
    effects = tmp_path / "fx.yaml"
    effects.write_text("regions:\n  - {name: r, map: gm, center: [0, 10, 30], radius_mm: 15,"
                       " d: -0.5}\n")
    assert main(["synth", "--out", str(tmp_path / "c"), "--subjects", "12", "--seed", "2",
                 "--grid-mm", "10", "--effects", str(effects)]) == 0
    truth = read_truth(tmp_path / "c")
    assert truth["n_subjects"] == 12 and truth["effects"]["regions"][0]["name"] == "r"
    assert "oracle accuracy" in capsys.readouterr().out


def test_models_counts(capsys):
    assert main(["models", "sequential_2", "inception_1", "--grid", "61", "73", "61",
                 "--maps", "gm"]) == 0
    out = capsys.readouterr().out
    assert "1,208,610 parameters" in out and "Total params" in out
