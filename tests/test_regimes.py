"""The dose-response and the regime map: gaps over swept settings, read per setting."""

import numpy as np
import pandas as pd
import pytest

from gblend.experiments import regimes

SEEDS = range(5)


def _run(variant, combo, method, seed, acc, n_train, overfit=0.1, dataset="synthetic"):
    return {
        "dataset": dataset,
        "variant": variant,
        "combo": combo,
        "method": method,
        "seed": seed,
        "n_modalities": combo.count("+") + 1,
        "n_train": n_train,
        "val_acc_last": acc,
        "test_acc_last": acc,
        "heldout_loss_last": 1.0 + overfit,
        "train_subset_loss_last": 1.0,
    }


def _dose_runs(gap_at):
    """audio below rgb; the joint model ``gap_at(dims, n)`` points from rgb, +-0.2 per seed."""
    rows = []
    for dims in (0, 1536):
        for frac, n in ((1.0, 2000), (0.25, 500)):
            variant = f"data.audio_noise_dims={dims}, data.train_frac={frac}"
            for seed in SEEDS:
                jitter = (seed - 2) * 0.002
                rows += [
                    _run(variant, "audio", "naive", seed, 0.3 + jitter, n, overfit=dims / 1000),
                    _run(variant, "rgb", "naive", seed, 0.7 + jitter, n),
                    _run(
                        variant, "audio+rgb", "naive", seed,
                        0.7 + gap_at(dims, n) / 100 + jitter * (seed % 2), n, overfit=0.5,
                    ),
                ]  # fmt: skip
    return pd.DataFrame(rows)


def test_setting_parses_variant_labels():
    assert regimes.setting("data.audio_noise_dims=96, data.train_frac=0.25") == {
        "audio_noise_dims": 96,
        "train_frac": 0.25,
    }
    assert regimes.setting("") == {}
    assert regimes.setting("train.optimizer=adam") == {"optimizer": "adam"}


def test_dose_response_finds_a_gap_where_there_is_one_and_only_there():
    runs = _dose_runs(lambda dims, n: -3.0 if dims else 0.5)
    table = regimes.dose_response(runs)
    assert len(table) == 4 and set(table.best_uni) == {"rgb"}
    noisy = table[table.audio_noise_dims == 1536]
    assert (noisy.verdict == "lower").all()
    np.testing.assert_allclose(noisy.gap, -3.0, atol=0.2)
    assert (table[table.audio_noise_dims == 0].verdict != "lower").all()
    np.testing.assert_allclose(table.overfit_audio.sort_values(), [0, 0, 1.536, 1.536])
    np.testing.assert_allclose(table.overfit_joint, 0.5)
    assert table.n_train.isin([2000, 500]).all()
    findings = regimes.dose_findings(table)
    assert findings[0].startswith("Control") and "at 0 of 2" in findings[0]
    assert "at 2 of 2 sizes" in findings[1]
    assert "paired) in 4 of 4 cells, and in 2 of the 2 cells where" in findings[3]
    assert "in 2 of 4 cells" in findings[4]
    assert "With 5 seeds a cell detects a difference of about" in findings[4]
    one_seed = regimes.dose_response(runs[runs.seed == 0])
    assert "With one seed per cell nothing is detectable." in regimes.dose_findings(one_seed)[4]


def test_dose_findings_say_when_the_control_shows_a_gap_and_data_do_not_help():
    table = regimes.dose_response(_dose_runs(lambda dims, n: -3.0 if n == 2000 else -1.0))
    findings = regimes.dose_findings(table)
    assert "at 2 of 2 training-set sizes (expected: none)" in findings[0]
    assert "for 0 of 1 noise levels" in findings[2]


def _regime_runs():
    """naive 4 points below image at 0.1 of train, 1 above at 1.0; offline recovers 3."""
    rows = []
    for frac, naive_gap, n in ((1.0, 1.0, 5000), (0.1, -4.0, 500)):
        variant = f"data.train_frac={frac}"
        for seed in SEEDS:
            j = (seed - 2) * 0.001
            common = {"variant": variant, "seed": seed, "n_train": n, "dataset": "avdigits"}
            rows += [
                _run(combo="image", method="naive", acc=0.9 + j, **common),
                _run(combo="audio", method="naive", acc=0.6 + j, **common),
                _run(combo="image+audio", method="naive", acc=0.9 + naive_gap / 100 + j, **common),
                _run(combo="image+audio", method="uniform", acc=0.9 + j, **common),
                _run(
                    combo="image+audio", method="offline",
                    acc=0.9 + (naive_gap + 3 * (frac < 1)) / 100 + j * (seed % 2), **common,
                ),
            ]  # fmt: skip
    return pd.DataFrame(rows)


def test_regime_map_reads_naive_against_best_uni_and_offline_against_naive():
    table = regimes.regime_map(_regime_runs()).set_index("train_frac")
    assert table.loc[0.1, "naive_vs_uni_verdict"] == "lower"
    assert table.loc[1.0, "naive_vs_uni_verdict"] == "higher"
    assert table.loc[0.1, "naive_vs_uni"] == pytest.approx(-4.0)
    assert table.loc[0.1, "offline_vs_naive"] == pytest.approx(3.0, abs=0.2)
    assert table.loc[0.1, "offline_vs_naive_verdict"] == "higher"
    assert table.loc[1.0, "best_uni"] == "image" and table.loc[0.1, "n_train"] == 500
    findings = regimes.regime_findings(table.reset_index())
    assert "below the best uni-modal model in 1 of 2 cells: avdigits at 0.1 of train" in findings[0]
    assert "above in 1: avdigits at 1 of train" in findings[1]
    assert "too few cells for a rank correlation" in findings[2]  # two cells: ranks say nothing
    four = pd.concat([table.reset_index(), table.reset_index().assign(dataset="hapt")])
    four["offline_vs_naive"] = [1.0, 3.0, 0.5, 2.0]  # falls as naive's gap rises, cell by cell
    four["naive_vs_uni"] = [2.0, -2.0, 4.0, 0.0]
    tracked = regimes.regime_findings(four)[2]
    assert "correlation between naive's gap and offline's gain over naive -1.00 (4 cells" in tracked
    assert "within one data set" not in tracked  # no data set has cells enough for ranks


def test_a_verdict_that_turns_on_val_s_choice_of_the_best_modality_is_named():
    runs = _regime_runs()
    runs = runs[runs.variant == "data.train_frac=0.1"].copy()
    # audio a hair below image on val, 3 points above it on test; naive 1 above image and 2
    # below audio on test, a verdict val's choice of image keeps out of the table
    audio = runs.combo == "audio"
    runs.loc[audio, "val_acc_last"] = runs.loc[audio, "val_acc_last"] + 0.299
    runs.loc[audio, "test_acc_last"] = runs.loc[audio, "test_acc_last"] + 0.33
    naive = (runs.combo == "image+audio") & (runs.method == "naive")
    runs.loc[naive, "test_acc_last"] = runs.loc[naive, "test_acc_last"] + 0.05
    table = regimes.regime_map(runs)
    row = table.iloc[0]
    assert row.best_uni == "image" and row.naive_vs_uni_verdict == "higher"
    assert row.val_choice_turns == (
        "audio, 0.10 points below on val, is higher on test (93.0% against 90.0%), and "
        "naive - audio is -2.0 [-2.0, -2.0], lower"
    )
    finding = regimes.regime_findings(table)[3]
    assert finding.startswith("In 1 of 1 cells val's choice of the best uni-modal model")
    assert "avdigits at 0.1 of train (val chose image; audio, 0.10 points" in finding
    # a modality below the chosen one on test turns nothing, though naive's verdict against
    # it differs: naive within noise of image, detectably above audio, 3 points below image
    runs.loc[audio, "test_acc_last"] = (
        runs.loc[runs.combo == "image", "test_acc_last"].values - 0.03
    )
    noise = runs.loc[naive, "seed"].map(lambda seed: 0.005 * (-1) ** seed)
    runs.loc[naive, "test_acc_last"] = (
        runs.loc[runs.combo == "image", "test_acc_last"].values + noise
    )
    table = regimes.regime_map(runs)
    assert table.naive_vs_uni_verdict.iat[0] == "no detectable difference"
    assert (table.val_choice_turns == "").all()
    assert regimes.regime_findings(table)[3].startswith("In no cell")


def test_the_gain_s_tracking_of_the_gap_is_read_within_each_data_set_too():
    cells = regimes.regime_map(_regime_runs())
    eight = pd.concat([cells] * 2 + [cells.assign(dataset="hapt")] * 2, ignore_index=True)
    # within each data set the gain rises with naive's gap; between them it falls
    eight["naive_vs_uni"] = [0.0, 1.0, 2.0, 3.0, -10.0, -9.0, -8.0, -7.0]
    eight["offline_vs_naive"] = [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]
    tracked = regimes.regime_findings(eight)[2]
    assert "over naive -0.52 (8 cells" in tracked
    assert tracked.endswith("; within one data set avdigits +1.00, hapt +1.00.")
    alone = regimes.regime_findings(eight[eight.dataset == "hapt"])[2]
    assert "+1.00 (4 cells" in alone and "within" not in alone  # one data set: said once


def test_a_page_names_the_sweeps_it_did_not_run():
    from gblend import pages
    from gblend.experiments import EXPERIMENTS

    cpu = pages.swept_axes_text(EXPERIMENTS["regime"].grid("cpu"), "regime")
    assert cpu.startswith("`data.train_frac` ∈ {1.0, 0.1}. At `full` scale the grid sweeps")
    assert "`data.train_frac` ∈ {1.0, 0.5, 0.2, 0.1}; this page's grid does not" in cpu
    full = pages.swept_axes_text(EXPERIMENTS["regime"].grid("full"), "regime")
    assert full == "`data.train_frac` ∈ {1.0, 0.5, 0.2, 0.1}"


def test_the_wide_encoders_are_a_full_scale_grid_of_their_own():
    from gblend.experiments import EXPERIMENTS, GridError
    from gblend.models import ModelConfig
    from gblend.results import canonical_json

    wide = EXPERIMENTS["regime_width"]
    with pytest.raises(GridError, match="full scale only"):
        wide.grid("cpu")
    units = list(wide.grid("full", seeds="0"))
    assert {u.dataset for u in units} == {"avdigits", "hapt", "mfeat"}
    assert {u.model.hidden for u in units} == {4 * ModelConfig.hidden}
    regime = EXPERIMENTS["regime"].grid("full", seeds="0")
    assert {u.model.hidden for u in regime} == {ModelConfig.hidden}
    # the same settings otherwise: every wide unit is a default-width regime unit widened
    narrow = {canonical_json(u.config()) for u in regime}
    widened = {canonical_json({**u.config(), "model": {**u.config()["model"],
               "hidden": ModelConfig.hidden}}) for u in units}  # fmt: skip
    assert widened == narrow


def test_regime_findings_name_the_width_where_the_map_sweeps_it():
    table = regimes.regime_map(_regime_runs()).assign(hidden=512)
    findings = regimes.regime_findings(table)
    assert "avdigits at 0.1 of train, width 512" in findings[0]
    assert "width" not in regimes.regime_findings(regimes.regime_map(_regime_runs()))[0]


def test_another_scale_s_map_is_read_only_where_complete(tmp_path):
    assert regimes.map_at(None) == ("A `smoke` page shows no other scale's map.", None)
    text, table = regimes.map_at("smoke", str(tmp_path))
    assert text == "No data set's map at `smoke` scale is committed." and table is None
    assert list(tmp_path.iterdir()) == []  # nothing was trained


def test_another_scale_s_map_leaves_out_what_the_page_shows_at_that_scale(monkeypatch):
    from types import SimpleNamespace

    runs = _regime_runs()
    runs = pd.concat([runs, runs.assign(dataset="hapt")])
    read = []

    def committed_at(name, scale, results_dir, datasets):
        read.append(list(datasets))
        return SimpleNamespace(runs=runs[runs.dataset.isin(datasets)], weights=None)

    monkeypatch.setattr(regimes, "committed_datasets", lambda *_: ["avdigits", "hapt"])
    monkeypatch.setattr(regimes, "committed_at", committed_at)
    text, table = regimes.map_at("full")
    assert text == "At `full` scale the map is committed for avdigits, hapt." and len(table) == 4
    text, table = regimes.map_at("full", shown=["avdigits"])
    assert text.endswith("for avdigits, hapt; avdigits above.") and set(table.dataset) == {"hapt"}
    text, table = regimes.map_at("full", shown=["hapt", "avdigits"])
    assert text.endswith("for avdigits, hapt; it is the map above.") and table is None
    assert read == [["avdigits", "hapt"], ["hapt"]]  # what the page shows is not read again


def test_a_grid_is_checked_only_for_the_data_sets_asked_for(tmp_path, monkeypatch):
    from gblend.experiments import registry

    checked = []
    monkeypatch.setattr(registry, "_done", lambda entry, scale, d, results_dir: checked.append(d))
    assert registry.committed_at("regime", "full", str(tmp_path), datasets=["hapt"]) is None
    assert checked == ["hapt"]  # the page's own data sets are not checked again


def test_the_wide_map_is_read_only_where_committed(tmp_path):
    assert regimes.width_at(None) == ("A `smoke` page shows no wider encoders.", None)
    text, table = regimes.width_at("full", str(tmp_path))
    assert text == "With 512 hidden units nothing is committed at `full` scale yet."
    assert table is None and list(tmp_path.iterdir()) == []  # nothing was trained


def test_the_wide_map_sets_each_complete_wide_cell_beside_its_default_one(monkeypatch):
    from types import SimpleNamespace

    runs = _regime_runs()
    narrow = pd.concat([runs, runs.assign(dataset="hapt")])
    wide = runs.assign(test_acc_last=runs.test_acc_last - 0.01)
    wide = pd.concat([wide, wide[wide.variant == "data.train_frac=1.0"].assign(dataset="hapt")])
    done = [("avdigits", f) for f in (1.0, 0.5, 0.2, 0.1)] + [("hapt", 1.0)]
    left = [("hapt", f) for f in (0.5, 0.2, 0.1)] + [("mfeat", f) for f in (1.0, 0.5, 0.2, 0.1)]
    committed = SimpleNamespace(runs=narrow, weights=None)
    monkeypatch.setattr(regimes, "committed_at", lambda name, scale, results_dir: committed)
    monkeypatch.setattr(
        regimes,
        "committed_cells",
        lambda *_: (SimpleNamespace(runs=wide, weights=None), done, left),
    )
    text, table = regimes.width_at("full")
    assert text == (
        "At `full` scale, 5 seeds per cell, committed for avdigits, hapt at 1 of train; "
        "not yet for hapt at 0.5, 0.2, 0.1 of train, mfeat."
    )
    # hapt's default cell at 0.1 of train waits for its wide one
    cells = sorted(zip(table.dataset, table.hidden, table.train_frac, strict=True))
    assert cells == [
        ("avdigits", 128, 0.1), ("avdigits", 128, 1.0), ("avdigits", 512, 0.1),
        ("avdigits", 512, 1.0), ("hapt", 128, 1.0), ("hapt", 512, 1.0),
    ]  # fmt: skip
    by = table.set_index(["dataset", "hidden", "train_frac"])
    assert by.loc[("avdigits", 512, 0.1), "naive acc"] == pytest.approx(
        by.loc[("avdigits", 128, 0.1), "naive acc"] - 1
    )
    assert "avdigits at 0.1 of train, width 512" in regimes.regime_findings(table)[0]
    committed = None  # the default width not committed: the wide cells alone
    assert set(regimes.width_at("full")[1].hidden) == {512}
    # the default width's map where the page has read it already, not read again
    given = regimes.width_at("full", default=regimes.regime_map(narrow))[1]
    assert sorted(zip(given.dataset, given.hidden, given.train_frac, strict=True)) == cells


def test_a_wide_cell_is_read_once_all_its_runs_are_on_disk(tmp_path):
    from gblend import experiments as ex
    from gblend.experiments import EXPERIMENTS
    from gblend.experiments.registry import committed_cells

    grid = EXPERIMENTS["regime_width"].grid("smoke", datasets="mfeat", epochs=2)
    whole = [u for u in grid if dict(u.variant)["data.train_frac"] == 1.0]
    ex.run(whole + [u for u in grid if dict(u.variant)["data.train_frac"] == 0.5][:1],
           str(tmp_path), progress=False)  # fmt: skip
    results, done, left = committed_cells("regime_width", "smoke", "data.train_frac", str(tmp_path))
    assert done == [("mfeat", 1.0)]  # 0.5 has one run of its six: not complete
    assert ("mfeat", 0.5) in left and ("hapt", 1.0) in left and len(done) + len(left) == 12
    assert len(results.runs) == len(whole)


def test_the_constructed_variant_runs_at_full_only_on_degraded_avdigits():
    from gblend.data.avdigits import AV_MNIST
    from gblend.experiments import EXPERIMENTS, GridError, scale_datasets
    from gblend.results import canonical_json

    entry = EXPERIMENTS["degraded"]
    assert scale_datasets("degraded", "cpu") == () and scale_datasets("degraded", "full") == (
        "avdigits",
    )
    with pytest.raises(GridError, match="full scale only"):
        entry.grid("cpu")
    assert entry.grid("full").seeds == (0, 1, 2, 3, 4)
    units = list(entry.grid("full", seeds="0"))
    assert {u.dataset for u in units} == {"avdigits"}
    assert all(u.data_knobs[k] == v for u in units for k, v in AV_MNIST.items())
    real = EXPERIMENTS["regime"].grid("full", datasets="avdigits", seeds="0")
    plain = {canonical_json(u.config()) for u in real}
    assert plain and not plain & {canonical_json(u.config()) for u in units}  # never the real set
    assert regimes.constructed_at(None)[1] is None


def test_the_constructed_variant_is_read_only_where_committed(tmp_path):
    text, table = regimes.constructed_at("smoke", str(tmp_path))
    assert (
        text == "The constructed variant is not yet committed at `smoke` scale." and table is None
    )
