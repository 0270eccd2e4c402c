"""The results store: keyed by configuration, atomic, resumable."""

import pandas as pd
import pytest

from mri3dcnn.results import ResultsStore


def _key(**over):
    k = {"chapter": "c", "family": "m", "maps": ["gm"], "fusion": "none", "protocol": "inner",
         "variant": "none", "features": "voxels", "fold": 0, "repeat": 0, "seed": 0,
         "config": {"a": 1}}
    k.update(over)
    return k


def _preds():
    return pd.DataFrame({"participant_id": ["s1", "s2"], "set": ["cv", "cv"],
                         "y_true": [0, 1], "score": [0.2, 0.7], "pred": [0, 1]})


def test_compute_once(tmp_path):
    store = ResultsStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"predictions": _preds(), "info": {"x": 1}}

    a = store.get_or_compute(_key(), compute)
    b = store.get_or_compute(_key(), compute)
    assert len(calls) == 1 and a.path == b.path
    pd.testing.assert_frame_equal(b.predictions, _preds())
    store.get_or_compute(_key(config={"a": 2}), compute)
    assert len(calls) == 2
    assert len(store.predictions()) == 4


def test_interrupted_write_leaves_nothing(tmp_path):
    store = ResultsStore(tmp_path)

    def broken(folder):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put(_key(), _preds(), artifacts=broken)
    assert store.get(_key()) is None
    assert store.records() == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_incomplete_predictions_refused(tmp_path):
    with pytest.raises(ValueError, match="lack columns"):
        ResultsStore(tmp_path).put(_key(), _preds().drop(columns="score"))
    with pytest.raises(ValueError, match="lacks"):
        ResultsStore(tmp_path).path_for({"chapter": "c"})


def test_predictions_carry_explicit_key_columns(tmp_path):
    store = ResultsStore(tmp_path)
    store.put(_key(fusion="channel", maps=["gm", "fa"], variant="shuffled-labels"), _preds())
    p = store.predictions()
    assert p["model"].unique().tolist() == ["m-channel-shuffled-labels"]
    assert p["family"].unique().tolist() == ["m"] and p["maps"].unique().tolist() == ["gm+fa"]
    assert {"fusion", "variant", "features", "protocol", "hash"} <= set(p.columns)
    assert (p["variant"] == "shuffled-labels").all()
