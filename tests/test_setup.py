"""The setup page's tables describe the data the grids really train on."""

from dataclasses import replace

from gblend.experiments import get_scale, setup
from gblend.experiments.runner import load_unit_data
from gblend.experiments.scales import SCALES


def test_setup_table_reports_the_grids_settings_and_splits():
    table = setup.setup_table("smoke", ["mfeat", "hapt"]).set_index("dataset")
    for name in ("mfeat", "hapt"):
        unit = setup.study_unit(name, "smoke")
        dataset = load_unit_data(unit)
        row = table.loc[name]
        assert row["epochs"] == unit.train.epochs and row["lr"] == unit.train.lr
        assert {s: row[f"{s} size"] for s in dataset.splits} == {
            s: len(i) for s, i in dataset.splits.items()
        }
    assert "SequenceEncoder" in table.loc["hapt", "modalities (encoder, input shape)"]


def test_hapt_subjects_and_avdigits_clips_per_split():
    subjects = setup.hapt_subjects("smoke").set_index("split")
    ids = [set(map(int, s.split(", "))) for s in subjects.ids]
    assert sum(len(i) for i in ids) == len(set().union(*ids))  # no subject in two splits
    assert subjects.subjects.tolist() == [len(i) for i in ids]
    clips = setup.avdigits_clip_reuse("smoke").set_index("split")
    assert (clips["uses per clip (max)"] >= clips["uses per clip (mean)"]).all()
    assert (clips["uses per clip (mean)"] * clips["distinct clips"]).round().tolist() == (
        clips.samples.tolist()
    )


def test_what_the_scales_share(monkeypatch):
    shared = setup.shared_across_scales(["synthetic", "mfeat"]).set_index("dataset")
    assert shared.loc["synthetic", "same data at every scale"]  # one pool at cpu and full
    assert shared.loc["mfeat", "same data at every scale"]  # the whole real set at both
    common = min(get_scale("cpu").seeds, get_scale("full").seeds)  # both start at seed 0
    assert shared.loc["mfeat", "seeds shared"] == ", ".join(map(str, range(common)))
    # a scale that drew a larger synthetic pool would train on other data
    monkeypatch.setitem(SCALES, "full", replace(SCALES["full"], synthetic_samples=16000))
    bigger = setup.shared_across_scales(["synthetic"]).set_index("dataset")
    assert not bigger.loc["synthetic", "same data at every scale"]
