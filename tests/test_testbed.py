"""The testbed's calibration profile is read from val (and T') only, and names what it finds."""

import pandas as pd
import pytest

from gblend.experiments import testbed

ALONE = {"rgb": 0.70, "flow": 0.60, "audio": 0.30}


def fake_runs(gap: float, joint_overfit: float) -> pd.DataFrame:
    """Two seeds of one setting: every combination ``gap`` (accuracy) from its best modality,
    the joint model's val - T' loss ``joint_overfit`` (rgb's is 0.2). No test column at all."""
    rows = []
    for seed in (1000, 1001):
        for combo, acc in (
            *ALONE.items(),
            ("audio+rgb", ALONE["rgb"] + gap),
            ("audio+flow", ALONE["flow"] + gap),
            ("rgb+flow", ALONE["rgb"] + gap),
            ("audio+rgb+flow", ALONE["rgb"] + gap),
        ):
            overfit = joint_overfit if combo == testbed.FULL else 0.2
            rows.append({"variant": f"gap={gap}", "combo": combo, "seed": seed,
                         "n_modalities": combo.count("+") + 1, "val_acc_last": acc,
                         "val_acc": acc, "val_loss_last": 1.0 + overfit,
                         "train_subset_loss_last": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_setting_meets_the_profile_only_when_every_part_holds():
    good = testbed.calibration_profile(fake_runs(-0.02, 0.5)).iloc[0]
    assert good["ranking ok"] and good["gaps ok"] and good["meets profile"]
    assert good["gap audio+rgb"] == pytest.approx(-2.0)
    assert good["overfit_joint_minus_rgb"] == pytest.approx(0.3)
    above = testbed.calibration_profile(fake_runs(+0.02, 0.5)).iloc[0]
    assert not above["gaps ok"] and not above["meets profile"]
    less_overfit = testbed.calibration_profile(fake_runs(-0.02, 0.1)).iloc[0]
    assert less_overfit["gaps ok"] and not less_overfit["meets profile"]


def test_the_choice_names_the_settings_or_the_closest_one():
    both = pd.concat([fake_runs(-0.02, 0.5), fake_runs(+0.02, 0.5)])
    assert testbed.choice_text(testbed.calibration_profile(both)).startswith(
        "1 of 2 settings meet the profile on val: `gap=-0.02`"
    )
    none = pd.concat([fake_runs(+0.05, 0.5), fake_runs(+0.02, 0.5)])
    text = testbed.choice_text(testbed.calibration_profile(none))
    assert text.startswith("None of the 2 settings") and "`gap=0.02`" in text


def test_the_current_preset_is_named_in_the_grid_s_terms():
    axes = (("data.audio_noise_dims", (1, 2)), ("data.shared_noise", (0.1, 0.2)))
    label = testbed.preset_label(axes)
    preset = testbed.synthetic.SYNTHETIC_PRESETS["kinetics"]
    assert label == (f"data.audio_noise_dims={preset['audio']['noise_dims']}, "
                     f"data.shared_noise={preset['shared_noise']}")  # fmt: skip
    profile = testbed.calibration_profile(fake_runs(-0.02, 0.5))
    assert testbed.choice_text(profile, "gap=-0.02").endswith("is among them.")
    assert testbed.choice_text(profile, "other").endswith("(`other`) is not.")


def schedule_runs(acc_by_epochs: dict[int, float]) -> pd.DataFrame:
    """Two seeds, three models, one val accuracy per schedule length (rgb +-1 point per seed,
    its sign changing with the schedule)."""
    rows = []
    for epochs, acc in acc_by_epochs.items():
        for seed in (1000, 1001):
            jitter = 0.01 if (seed + (epochs == 60)) % 2 else -0.01
            for combo, offset in (("rgb", 0.0), ("audio", -0.3), ("audio+rgb", -0.01)):
                rows.append({"variant": f"train.epochs={epochs}", "combo": combo, "seed": seed,
                             "val_acc_last": acc + offset + jitter * (combo == "rgb")})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_schedule_val_picks_is_named_only_when_it_is_outside_the_noise():
    clear = testbed.schedule_choice(schedule_runs({15: 0.60, 30: 0.70, 60: 0.65}), current=30)
    assert clear.startswith("On val, 30 epochs gives the highest accuracy")
    assert "+5.0 points" in clear and "is the one val picks" in clear
    other = testbed.schedule_choice(schedule_runs({15: 0.60, 30: 0.65, 60: 0.70}), current=30)
    assert "val picks another, and the chapters have not been rerun" in other
    tie = testbed.schedule_choice(schedule_runs({15: 0.60, 30: 0.650, 60: 0.651}), current=30)
    assert "within the noise" in tie and "30-epoch schedule stands" in tie
    table = testbed.schedule_table(schedule_runs({15: 0.60, 30: 0.70}))
    assert list(table.epochs) == [15, 30]
    assert table["mean over models"].round(2).tolist() == [49.67, 59.67]


def test_another_scale_s_calibration_is_read_only_when_complete(tmp_path):
    assert testbed.profile_at("smoke", str(tmp_path)) is None  # nothing there: nothing trained
    assert list(tmp_path.iterdir()) == []
    assert testbed.other_scale_text(None, None, "x").startswith("A `smoke` page shows no")
    assert testbed.other_scale_text("full", None, "x") == (
        "The calibration grid at `full` scale is not computed."
    )
    profile = testbed.calibration_profile(fake_runs(gap=-0.02, joint_overfit=0.5))
    assert testbed.other_scale_text("full", profile, "gap=-0.02").startswith(
        "At `full` scale: 1 of 1 settings meet the profile"
    )
