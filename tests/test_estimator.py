"""The estimator's named options: each changes what it names, and the defaults are Algorithm 1
as printed; the two controls of a G-Blend difference train what they say."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_blend import AFTER, BEFORE, CONFIG, NO_FLOOR, model, pair, task

from gblend.blend import (
    DegeneratePolicy,
    EstimatorOptions,
    bootstrap_weights,
    estimate_weights,
    gb_estimate,
    heldout_subset,
    overfitting,
    train_offline,
)
from gblend.experiments import methods as gmethods
from gblend.models import JOINT
from gblend.train import Trainer, evaluate, evaluate_per_sample

# --- the formula variants, by hand on the hand-computed example of test_blend ----------------
#   head a: dG 0.6, dO 0.4, at the end L^V 1.6 and O 0.6; head b: dG 0.2, dO 0.3, L^V 1.9, O 0.4


def test_the_default_formula_is_the_papers():
    paper = estimate_weights(BEFORE, AFTER, NO_FLOOR)
    assert paper.formula == "paper"
    assert paper.weights == estimate_weights(BEFORE, AFTER, NO_FLOOR, formula="paper").weights
    assert paper.weights["a"] == pytest.approx(3.75 / (3.75 + 0.2 / 0.09))


def test_levels_use_the_final_heldout_loss_and_overfitting_level():
    """MultiBench's default: G = L^V at the end, O = the overfitting at the end (a negative
    one clamped to 1e-4), w = |G / O^2| normalised."""
    est = estimate_weights(BEFORE, AFTER, NO_FLOOR, formula="levels")
    raw = {"a": 1.6 / 0.6**2, "b": 1.9 / 0.4**2}
    assert est.weights == pytest.approx({h: w / sum(raw.values()) for h, w in raw.items()})
    assert est.delta_o == pytest.approx(overfitting(AFTER))
    before, after = pair({"a": 2.0, "b": 2.0}, {"a": 2.2, "b": 2.1},
                         {"a": 1.0, "b": 2.0}, {"a": 1.6, "b": 1.9})  # fmt: skip
    # b ends with heldout below train loss: its level is clamped, so it takes nearly all
    assert estimate_weights(before, after, NO_FLOOR, formula="levels").weights["b"] > 0.99


def test_abs_gain_weights_a_head_whose_heldout_loss_rose():
    before, after = pair({"a": 2.0, "b": 2.0}, {"a": 2.2, "b": 2.1},
                         {"a": 1.0, "b": 1.5}, {"a": 1.6, "b": 2.3})  # fmt: skip
    assert estimate_weights(before, after, NO_FLOOR).weights["b"] == 0  # paper: no gain
    est = estimate_weights(before, after, NO_FLOOR, formula="abs_gain")
    # b: |dG| = 0.2, dO = (2.3 - 1.5) - 0.1 = 0.7
    raw = {"a": 0.6 / 0.4**2, "b": 0.2 / 0.7**2}
    assert est.weights == pytest.approx({h: w / sum(raw.values()) for h, w in raw.items()})


def test_softmax_exponentiates_the_ratios():
    est = estimate_weights(BEFORE, AFTER, NO_FLOOR, formula="softmax")
    ratios = np.array([0.6 / 0.4**2, 0.2 / 0.3**2])
    expected = np.exp(ratios) / np.exp(ratios).sum()
    assert [est.weights["a"], est.weights["b"]] == pytest.approx(list(expected))


def test_unknown_options_raise_before_any_compute():
    with pytest.raises(ValueError, match="formula"):
        estimate_weights(BEFORE, AFTER, formula="log_ratio")
    for bad in ({"copy_schedule": "cosine"}, {"measure_at": "first"}, {"heldout_frac": 0},
                {"copy_draw": -1}):  # fmt: skip
        with pytest.raises(ValueError):
            EstimatorOptions(**bad)
    with pytest.raises(ValueError, match="window"):
        gmethods.OfflineParams(window=1.5)
    with pytest.raises(ValueError, match="formula"):
        gmethods.OfflineParams(formula="log_ratio")


# --- the bootstrap of V -------------------------------------------------------------------


def test_bootstrap_of_constant_samples_gives_the_point_estimate():
    """Every V sample equal to its head's mean: every resample is the original estimate."""
    n = 50
    before_v = {h: np.full(n, BEFORE.heldout[h]) for h in BEFORE.heldout}
    after_v = {h: np.full(n, AFTER.heldout[h]) for h in AFTER.heldout}
    boot = bootstrap_weights(BEFORE, AFTER, before_v, after_v, 30, seed=0, policy=NO_FLOOR)
    point = estimate_weights(BEFORE, AFTER, NO_FLOOR).weights
    assert boot["resamples"] == 30
    assert boot["low"] == pytest.approx(point) and boot["high"] == pytest.approx(point)


def test_bootstrap_interval_widens_with_noisier_samples():
    rng = np.random.default_rng(0)
    widths = []
    for noise in (0.05, 0.5):
        before_v = {h: BEFORE.heldout[h] + noise * rng.standard_normal(200) for h in "ab"}
        after_v = {h: AFTER.heldout[h] + noise * rng.standard_normal(200) for h in "ab"}
        boot = bootstrap_weights(BEFORE, AFTER, before_v, after_v, 100, 0, NO_FLOOR)
        widths.append(boot["high"]["a"] - boot["low"]["a"])
        assert boot["low"]["a"] <= boot["median"]["a"] <= boot["high"]["a"]
    assert widths[1] > widths[0]


def test_per_sample_values_average_to_the_evaluated_means():
    x, y, splits = task()
    net = model()
    index = torch.as_tensor(splits["heldout"])
    means = evaluate(net, x, y, index)
    for metric, column in (("loss", 0), ("acc", 1)):
        values = evaluate_per_sample(net, x, y, index, metric)
        assert {h: v.mean() for h, v in values.items()} == pytest.approx(
            {h: m[column] for h, m in means.items()})  # fmt: skip


# --- the options of gb_estimate -----------------------------------------------------------


def estimate(options=None, config=CONFIG, n=4):
    x, y, splits = task()
    est, _ = gb_estimate(model(), x, y, splits, config, n_epochs=n, options=options)
    return est


def test_default_options_are_the_paper_algorithm_bit_for_bit():
    assert estimate(EstimatorOptions()).weights == estimate(None).weights
    assert "options" not in estimate(EstimatorOptions()).context


def test_the_main_schedule_reaches_the_copies_only_when_asked():
    stepped = replace(CONFIG, lr_milestones=(1,), lr_gamma=0.01)
    constant = estimate(EstimatorOptions(), stepped)
    assert constant.weights == estimate(EstimatorOptions(), CONFIG).weights  # no schedule
    main = estimate(EstimatorOptions(copy_schedule="main"), stepped)
    assert main.weights != pytest.approx(constant.weights)
    assert main.context["options"]["copy_schedule"] == "main"


def test_best_epoch_reading_takes_each_heads_lowest_heldout_loss():
    x, y, splits = task()
    options = EstimatorOptions(measure_at="best")
    est, _ = gb_estimate(model(), x, y, splits, CONFIG, n_epochs=5, options=options)
    # the same copies, recorded every epoch: each head's epoch of lowest V loss
    from gblend.blend import EstimationCopies

    copies = EstimationCopies(model())
    cfg = replace(CONFIG, epochs=5, lr_milestones=(), restore_best=False, patience=None)
    trainer = Trainer(cfg).start(copies, x, y, splits)
    trainer.train_epochs(5, dict.fromkeys(copies.heads, 1.0)).finish()
    hist = trainer.history_
    held = hist[(hist.split == "heldout") & (hist.epoch > 0)]
    for head in copies.heads:
        rows = held[held["head"] == head].set_index("epoch").loss
        assert est.context["after_epochs"][head] == rows.idxmin()
        before = hist[(hist.epoch == 0) & (hist["head"] == head) & (hist.split == "heldout")]
        assert est.delta_g[head] == pytest.approx(float(before.loss.iloc[0]) - rows.min())


def test_heldout_share_measures_a_seeded_subset_of_v():
    heldout = np.arange(100, 160)
    half = heldout_subset(heldout, 0.5, seed=3)
    assert len(half) == 30 and set(half) <= set(heldout) and list(half) == sorted(half)
    assert list(half) == list(heldout_subset(heldout, 0.5, seed=3))
    assert list(half) != list(heldout_subset(heldout, 0.5, seed=4))
    assert list(heldout_subset(heldout, 1.0, seed=3)) == list(heldout)
    assert estimate(EstimatorOptions(heldout_frac=0.25)).weights != pytest.approx(
        estimate().weights
    )


def test_a_copy_redraw_changes_the_estimate_from_the_same_checkpoint():
    """Another draw: other mini-batch orders and T' from the same checkpoint, so other
    measurements (the weights may still coincide where the policy floors them)."""
    redraws = [estimate(EstimatorOptions(copy_draw=k)) for k in (0, 1, 2)]
    assert redraws[0].weights == estimate().weights
    assert redraws[1].delta_g != pytest.approx(redraws[0].delta_g)
    assert redraws[2].delta_g != pytest.approx(redraws[1].delta_g)


def test_bootstrap_is_kept_with_the_estimate_and_changes_nothing_else():
    plain = estimate()
    boot = estimate(EstimatorOptions(bootstrap=20))
    assert boot.weights == plain.weights and plain.bootstrap == {}
    assert boot.bootstrap["resamples"] == 20 and set(boot.bootstrap["low"]) == set(boot.weights)
    assert boot.to_json()["bootstrap"]["high"] == boot.bootstrap["high"]
    assert estimate(EstimatorOptions(bootstrap=20, measure_at="best")).bootstrap == {}


# --- offline parameters, keys and the controls --------------------------------------------


def test_window_is_a_fraction_of_the_run_spent_into_epochs():
    assert gmethods.OfflineParams().resolve(30).estimate_epochs == 30
    half = gmethods.OfflineParams(window=0.5).resolve(30)
    assert half == gmethods.OfflineParams(estimate_epochs=15).resolve(30)
    assert gmethods.OfflineParams(window=0.125).resolve(30).estimate_epochs == 4
    assert gmethods.OfflineParams(estimate_epochs=7, window=0.5).resolve(30).estimate_epochs == 7


def test_offline_params_pass_their_options_to_the_estimator():
    params = gmethods.OfflineParams(formula="softmax", copy_draw=2, heldout_frac=0.5)
    assert params.options() == EstimatorOptions(formula="softmax", copy_draw=2, heldout_frac=0.5)
    assert gmethods.OfflineParams().options() == EstimatorOptions()


def test_aux_floor_puts_the_policy_floor_on_every_modality_head():
    weights = gmethods.floor_weights(("audio", "rgb", "flow", JOINT))
    floor = DegeneratePolicy().min_weight
    assert weights == pytest.approx({"audio": floor, "rgb": floor, "flow": floor,
                                     JOINT: 1 - 3 * floor})  # fmt: skip
    assert math.isclose(sum(weights.values()), 1.0)


def test_joint_lr_matched_trains_the_fused_head_alone_with_its_estimated_weight():
    x, y, splits = task()
    control = train_offline(model(), x, y, splits, CONFIG, estimate_epochs=3, joint_only=True)
    blended = train_offline(model(), x, y, splits, CONFIG, estimate_epochs=3)
    assert control.estimates[0].weights == blended.estimates[0].weights  # the same estimate
    w_joint = blended.estimates[0].weights[JOINT]
    assert control.trainer.loss_weights_ == {JOINT: w_joint}
    # the modality heads were never trained: they end as they started
    start = model()
    for name, tensor in control.trainer.model_.state_dict().items():
        if name.startswith("modality_heads."):
            assert torch.equal(tensor, start.state_dict()[name].to(tensor.device)), name


def test_equivalence_verdicts_are_one_sided_at_the_margin():
    from gblend.experiments.stats import PairedDifference, equivalence

    def diff(low, high):
        return PairedDifference((low + high) / 2, 1.0, 5, low, high, 0.95)

    assert equivalence(diff(-0.8, 0.5), 1.0, "lower", "points") == "reproduced"
    assert equivalence(diff(-3.0, -1.5), 1.0, "lower", "points") == "contradicted"
    assert equivalence(diff(-2.0, 0.5), 1.0, "lower", "points").startswith("not detectable")
    assert equivalence(diff(0.02, 0.08), 0.1, "higher", "TV") == "reproduced"
    assert equivalence(diff(0.2, 0.4), 0.1, "higher", "TV") == "contradicted"
    assert equivalence(diff(-0.9, 1.2), 0.1, "higher", "TV").startswith("not detectable")
    one = PairedDifference(0.0, float("nan"), 1, -np.inf, np.inf, 0.95)
    assert equivalence(one, 1.0, "lower", "points").startswith("undetermined")


# --- the chapter's analysis, on hand-built frames ------------------------------------------

AXES = (("offline.window", (1.0, 0.5)), ("offline.copy_draw", (0, 1)))


def label(window=1.0, draw=0):
    return f"offline.window={window}, offline.copy_draw={draw}"


def weight_rows(variant, seed, weights):
    return [
        {"dataset": "d", "combo": "a+b", "method": "offline", "variant": variant, "seed": seed,
         "super_epoch": 0, "head": h, "weight": w, "delta_o": 0.1, "fallbacks": "",
         "boot_low": w - 0.1, "boot_high": w + 0.1}
        for h, w in weights.items()
    ]  # fmt: skip


def test_a_variant_names_the_one_axis_away_from_the_reference():
    from gblend.experiments import estimator

    assert estimator.configuration(label(), AXES) == ("paper", "")
    assert estimator.configuration(label(window=0.5), AXES) == ("window", 0.5)
    assert estimator.configuration(label(draw=1), AXES) == ("copy_draw", 1)


def test_weight_shifts_are_total_variation_distances_judged_against_redraws():
    import pandas as pd

    from gblend.experiments import estimator

    rows = []
    for seed in (0, 1):
        rows += weight_rows(label(), seed, {"a": 0.5, "b": 0.2, JOINT: 0.3})
        rows += weight_rows(label(draw=1), seed, {"a": 0.45, "b": 0.25, JOINT: 0.3})  # TV 0.05
        rows += weight_rows(label(window=0.5), seed, {"a": 0.1, "b": 0.2, JOINT: 0.7})  # TV 0.4
    shifts = estimator.weight_shifts(pd.DataFrame(rows), AXES).set_index("option")
    assert shifts.loc["window", "median_shift"] == pytest.approx(0.4)
    assert shifts.loc["window", "noise_floor"] == pytest.approx(0.05)
    assert bool(shifts.loc["window", "beyond_noise"])
    assert shifts.loc["copy_draw", "median_shift"] == pytest.approx(0.05)


def test_the_redraw_table_flags_a_collapse_against_naive():
    import pandas as pd

    from gblend.experiments import estimator

    weights = pd.DataFrame(
        weight_rows(label(), 0, {"a": 0.97, "b": 0.02, JOINT: 0.01})
        + weight_rows(label(draw=1), 0, {"a": 0.3, "b": 0.3, JOINT: 0.4})
    )
    runs = pd.DataFrame(
        [
            {"dataset": "d", "method": "naive", "variant": "", "seed": 0, "test_acc_last": 0.9},
            {"dataset": "d", "method": "offline", "variant": label(), "seed": 0,
             "test_acc_last": 0.2},
            {"dataset": "d", "method": "offline", "variant": label(draw=1), "seed": 0,
             "test_acc_last": 0.88},
        ]
    )  # fmt: skip
    table = estimator.redraw_table(runs, weights, AXES, "d")
    assert list(table.draw) == [0, 1] and list(table.collapsed) == [True, False]
    assert table.loc[0, "w_joint"] == pytest.approx(0.01)
    assert table.loc[0, "offline_acc"] == pytest.approx(20.0)


def test_claims_16_and_17_on_policy_weights_are_degenerate_estimates():
    import pandas as pd

    from gblend.experiments import estimator
    from gblend.experiments.blending import DEGENERATE

    axes = (
        ("offline.metric", ("loss", "acc")),
        ("offline.heldout_frac", (1.0, 0.1)),
        ("offline.copy_draw", (0, 1)),
    )

    def variant(metric="loss", share=1.0, draw=0):
        return f"offline.metric={metric}, offline.heldout_frac={share}, offline.copy_draw={draw}"

    def frames(reference_fallbacks: str):
        weights, runs = [], []
        configurations = {variant(): 0.90, variant("acc"): 0.895, variant(share=0.1): 0.9}
        configurations[variant(draw=1)] = 0.9
        for seed in range(5):
            for v, acc in configurations.items():
                rows = weight_rows(v, seed, {"a": 0.5 + 0.01 * seed, "b": 0.2, JOINT: 0.3})
                for row in rows:
                    if v == variant() and row["head"] != JOINT:
                        row["fallbacks"] = reference_fallbacks
                weights += rows
                runs.append({"dataset": "d", "method": "offline", "variant": v, "seed": seed,
                             "test_acc_last": acc + 0.001 * seed})  # fmt: skip
        return pd.DataFrame(runs), pd.DataFrame(weights)

    estimates = estimator.claims(*frames(""), axes).set_index("claim")
    assert DEGENERATE not in set(estimates.verdict)
    policy = estimator.claims(*frames("uniform"), axes).set_index("claim")
    assert list(policy.verdict) == [DEGENERATE, DEGENERATE]
    for claim in (16, 17):
        assert "the paper's weights: 10 of 10 modality-head estimates" in policy.evidence[claim]
        assert "the paper's weights: 0 of 10" in estimates.evidence[claim]


# --- the two named floors of the policy ---------------------------------------------------


def test_the_noise_floor_raises_a_change_in_overfitting_below_its_noise():
    # b's dO is 0.3; with a standard error of 0.5 and a floor of 2 it counts as 1.0
    se = {"a": 0.01, "b": 0.5}
    est = estimate_weights(BEFORE, AFTER, DegeneratePolicy(0.0, noise_floor=2.0), delta_o_se=se)
    raw = {"a": 0.6 / 0.4**2, "b": 0.2 / 1.0**2}
    assert est.weights == pytest.approx({h: w / sum(raw.values()) for h, w in raw.items()})
    assert [f.rule for f in est.fallbacks] == ["noise_floor"]
    off = estimate_weights(BEFORE, AFTER, NO_FLOOR, delta_o_se=se)
    assert off.weights == estimate_weights(BEFORE, AFTER, NO_FLOOR).weights
    with pytest.raises(ValueError, match="delta_o_se"):
        estimate_weights(BEFORE, AFTER, DegeneratePolicy(noise_floor=1.0))


def test_the_standard_error_of_the_change_is_that_of_the_mean_per_sample_change():
    from gblend.blend import delta_o_standard_errors

    before = {"a": np.array([1.0, 2.0, 3.0, 4.0])}
    after = {"a": np.array([1.5, 2.0, 3.5, 5.0])}  # changes 0.5, 0, 0.5, 1
    change = np.array([0.5, 0.0, 0.5, 1.0])
    expected = change.std(ddof=1) / 2
    assert delta_o_standard_errors(before, after)["a"] == pytest.approx(expected)


def test_the_fused_heads_floor_keeps_the_evaluated_head_trained():
    before, after = pair({"a": 2.0, JOINT: 2.0}, {"a": 2.2, JOINT: 2.1},
                         {"a": 1.0, JOINT: 1.5}, {"a": 1.6, JOINT: 2.05})  # fmt: skip
    starved = estimate_weights(before, after, DegeneratePolicy(min_weight=0.01))
    assert starved.weights[JOINT] < 0.1  # a: 0.6 / 0.4^2 against joint: 0.05 / 0.45^2
    kept = estimate_weights(before, after, DegeneratePolicy(0.01, joint_min_weight=0.25))
    assert kept.weights[JOINT] == pytest.approx(0.25)
    assert sum(kept.weights.values()) == pytest.approx(1.0)
    assert "joint_min_weight" in [f.rule for f in kept.fallbacks]


def test_offline_params_pass_their_policy_floors_on():
    params = gmethods.OfflineParams(noise_floor=2.0, joint_min_weight=0.25)
    assert params.policy() == DegeneratePolicy(0.01, noise_floor=2.0, joint_min_weight=0.25)
    x, y, splits = task()
    plain, _ = gb_estimate(model(), x, y, splits, CONFIG, n_epochs=3)
    # a floor above the weight the printed formula gives, so that it must act
    floor = round(min(0.9, plain.weights[JOINT] + 0.2), 3)
    floored = gmethods.OfflineParams(noise_floor=2.0, joint_min_weight=floor)
    est, _ = gb_estimate(model(), x, y, splits, CONFIG, n_epochs=3, policy=floored.policy())
    assert est.weights[JOINT] == pytest.approx(floor)
    assert "joint_min_weight" in {f.rule for f in est.fallbacks}
    with pytest.raises(ValueError, match="measure_at"):
        gb_estimate(model(), x, y, splits, CONFIG, n_epochs=3, policy=params.policy(),
                    options=EstimatorOptions(measure_at="best"))  # fmt: skip


# --- claims 8 and 9 with intervals -----------------------------------------------------------


def claim8(weights_per_seed):
    import pandas as pd

    from gblend.experiments.blending import _weight_claim

    runs = pd.DataFrame(
        [{"n_modalities": 1, "combo": c, "val_acc_last": acc, "seed": s}
         for s in range(5) for c, acc in (("a", 0.9), ("b", 0.5))]
    )  # fmt: skip
    rows = []
    for seed, w in enumerate(weights_per_seed):
        for head, value in w.items():
            rows.append({"dataset": "d", "combo": "a+b", "method": "offline", "seed": seed,
                         "super_epoch": 0, "head": head, "weight": value})  # fmt: skip
    return _weight_claim("d", "a+b", runs, pd.DataFrame(rows))


def test_claim_8_is_judged_on_paired_weights_and_a_tie_is_no_evidence():
    ordered = [{"a": 0.6 + 0.01 * s, "b": 0.1, JOINT: 0.3 - 0.01 * s} for s in range(5)]
    assert claim8(ordered)["verdict"] == "reproduced"
    reversed_ = [{"a": 0.1, "b": 0.6 + 0.01 * s, JOINT: 0.3 - 0.01 * s} for s in range(5)]
    assert claim8(reversed_)["verdict"] == "contradicted"
    tied = [{"a": 0.01, "b": 0.01, JOINT: 0.98}] * 5  # both at the floor: no order to read
    assert claim8(tied)["verdict"].startswith("not detectable")


def test_claim_9_needs_a_change_beyond_the_seeds_spread():
    import pandas as pd

    from gblend.experiments.blending import _weight_change_claim

    rng = np.random.default_rng(0)

    def frame(path, noise):
        return pd.DataFrame(
            [{"head": JOINT, "super_epoch": e, "seed": s, "weight": w + noise * rng.normal()}
             for e, w in enumerate(path) for s in range(5)]
        )  # fmt: skip

    assert _weight_change_claim(frame([0.2, 0.5, 0.8], 0.02), 5)["verdict"] == "reproduced"
    flat = _weight_change_claim(frame([0.5, 0.52, 0.5], 0.2), 5)
    assert flat["verdict"].startswith("not detectable")
    assert _weight_change_claim(frame([0.2, 0.8], 0.0), 1)["verdict"].startswith("undetermined")


def test_online_gblend_takes_the_estimators_options_and_policies_at_every_super_epoch():
    from gblend.blend import train_online
    from gblend.experiments.grid import Grid

    x, y, splits = task()
    paper = train_online(model(), x, y, splits, CONFIG, warmup=2, length=2)
    levels = train_online(model(), x, y, splits, CONFIG, warmup=2, length=2,
                          options=EstimatorOptions(formula="levels"))  # fmt: skip
    assert [e.formula for e in paper.estimates] == ["paper"] * 3
    assert [e.formula for e in levels.estimates] == ["levels"] * 3
    assert any(
        a.weights != b.weights for a, b in zip(paper.estimates, levels.estimates, strict=True)
    )
    params = gmethods.OnlineParams(formula="softmax", heldout_frac=0.5, joint_min_weight=0.3)
    assert params.options() == EstimatorOptions(formula="softmax", heldout_frac=0.5)
    assert params.policy() == DegeneratePolicy(0.01, joint_min_weight=0.3)
    with pytest.raises(ValueError, match="formula"):
        gmethods.OnlineParams(formula="nope")
    # the new fields at their defaults leave an online run's cache key as it was
    grid = Grid.resolve("smoke", "mfeat", methods=("online",), seeds=1, combos="study",
                        axes={"online.formula": ["paper", "softmax"]})  # fmt: skip
    default, softmax = (u.config()["method_params"] for u in grid)
    assert set(default) == {"warmup", "length", "metric", "min_weight", "finetune_epochs"}
    assert softmax["formula"] == "softmax"
