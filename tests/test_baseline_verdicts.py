"""The verdicts of the Figure 1, Table 3 and Table 5 pages, on hand-made per-seed results:
each test fails when a rule stops reading the numbers it names."""

import numpy as np
import pandas as pd
import pytest

from gblend.experiments import baselines
from gblend.experiments.stats import CONTRADICTED, PARTLY, REPRODUCED

SEEDS = range(5)
NOISE = np.array([0.0, 0.2, -0.2, 0.1, -0.1])  # per-seed jitter: intervals are finite


def rows(dataset, combo, method, acc, variant="", val=None):
    """One method's runs: test accuracy ``acc`` (%) plus the jitter, at both epochs."""
    out = []
    for seed, jitter in zip(SEEDS, NOISE, strict=True):
        test = (acc + jitter) / 100
        out.append(
            {
                "dataset": dataset,
                "variant": variant,
                "combo": combo,
                "n_modalities": combo.count("+") + 1,
                "method": method,
                "seed": seed,
                "test_acc_last": test,
                "test_acc": test,
                "val_acc_last": (val if val is not None else acc) / 100,
                "val_acc": (val if val is not None else acc) / 100,
            }
        )
    return out


def figure1_runs(shift: float, variant: str = "dropout.rate=0.2") -> pd.DataFrame:
    """Uni-modal a (70) and b (50); naive 66; the four "stay below" remedies at 66 + shift,
    dropout and mid at 68 (above naive)."""
    data = rows("d", "a", "naive", 70) + rows("d", "b", "naive", 50) + rows("d", "a+b", "naive", 66)
    for m in baselines.STAY_BELOW:
        data += rows("d", "a+b", m, 66 + shift)
    data += rows("d", "a+b", "dropout", 68, variant=variant)
    data += rows("d", "a+b", "mid_concat", 68)
    return pd.DataFrame(data)


def test_claim4_holds_when_the_remedies_stay_below_and_dropout_and_mid_gain():
    (row,) = baselines.figure1_claims(figure1_runs(0.0), ("dropout.rate",)).to_dict("records")
    assert row["verdict"] == REPRODUCED, row
    assert "naive fusion is below the best uni-modal model" in row["evidence"]


def test_claim4_is_contradicted_when_every_remedy_beats_the_best_unimodal_model():
    runs = figure1_runs(8.0)  # the four remedies at 74 > 70; dropout/mid still above naive
    runs.loc[runs.method.isin(["dropout", "mid_concat"]), ["test_acc_last"]] -= 0.03
    (row,) = baselines.figure1_claims(runs, ("dropout.rate",)).to_dict("records")
    assert row["verdict"] == CONTRADICTED, row


def test_a_chosen_knob_does_not_split_the_methods_into_separate_settings():
    comparison = baselines.compare(figure1_runs(0.0), baselines.FIGURE1_ROWS, ("dropout.rate",))
    last = comparison[comparison.selection == "last"].set_index("method")
    assert last.setting.unique().tolist() == [""]
    assert last.loc["dropout", "knob"] == "dropout.rate=0.2"
    assert last.loc["dropout", "vs_naive"] == pytest.approx(2.0)
    assert last.loc["naive", "best_uni"] == "a"


def table5_runs(learned: float, offline: float, naive: float = 66) -> pd.DataFrame:
    data = rows("d", "a", "naive", 70) + rows("d", "b", "naive", 50)
    data += rows("d", "a+b", "naive", naive) + rows("d", "a+b", "uncertainty", learned)
    data += rows("d", "a+b", "offline", offline)
    return pd.DataFrame(data)


def drift(favoured: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "d",
            "seed": list(SEEDS),
            "favoured": favoured,
            "lowest_train_loss": "joint",
            "joint_weight": 0.5,
        }  # fmt: skip
    )


NO_WEIGHTS = pd.DataFrame(columns=["dataset", "combo", "method", "super_epoch", "head",
                                   "fallbacks", "seed"])  # fmt: skip


def verdict(frame: pd.DataFrame, claim: int) -> str:
    return frame[frame.claim == claim].verdict.item()


def test_claim11_needs_both_the_equivalence_with_naive_and_the_drift():
    both = baselines.table5_claims(table5_runs(66.2, 70), NO_WEIGHTS, drift("joint"))
    assert verdict(both, 11) == REPRODUCED
    no_drift = baselines.table5_claims(table5_runs(66.2, 70), NO_WEIGHTS, drift("a"))
    assert verdict(no_drift, 11) == PARTLY
    far = baselines.table5_claims(table5_runs(60, 70), NO_WEIGHTS, drift("a"))
    assert verdict(far, 11) == CONTRADICTED  # 6 points below naive, outside the margin


def test_claim11_judges_the_drift_only_on_runs_that_did_not_collapse():
    # every learned-weights run blew up (10%): its one head left trained "has" both
    blown = drift("a").assign(lowest_train_loss="a")
    collapsed = baselines.table5_claims(table5_runs(10, 70), NO_WEIGHTS, blown)
    assert verdict(collapsed, 11) == CONTRADICTED
    evidence = collapsed[collapsed.claim == 11].evidence.item()
    assert "in 0 of the 0 that did not collapse (more than 10 pts below naive in 5)" in evidence
    steady = baselines.table5_claims(table5_runs(60, 70), NO_WEIGHTS, blown)
    assert verdict(steady, 11) == PARTLY  # 6 below: no collapse, and the drift holds


def test_claim12_applies_only_where_naive_fusion_beats_the_best_unimodal_model():
    below = baselines.table5_claims(table5_runs(66, 72), NO_WEIGHTS, drift("joint"))
    assert verdict(below, 12) == baselines.NOT_APPLICABLE
    above = baselines.table5_claims(table5_runs(74, 76, naive=74), NO_WEIGHTS, drift("joint"))
    assert verdict(above, 12) == REPRODUCED
    flat = baselines.table5_claims(table5_runs(74, 74, naive=74), NO_WEIGHTS, drift("joint"))
    assert verdict(flat, 12).startswith("not detectable")


def table3_runs(adaptive_gap: float, gblend: float) -> pd.DataFrame:
    """SGD: uni 70, naive 69, G-Blend 73; AdaGrad and Adam: uni 68, naive 68 + gap, G-Blend
    ``gblend``; every method at its chosen learning rate."""
    data = []
    for opt, uni, naive, gb in (("sgd", 70, 69, 73), ("adagrad", 68, 68 + adaptive_gap, gblend),
                                ("adam", 68, 68 + adaptive_gap, gblend)):  # fmt: skip
        v = f"train.optimizer={opt}, train.lr=0.01"
        data += rows("d", "a", "naive", uni, v) + rows("d", "b", "naive", 40, v)
        data += rows("d", "a+b", "naive", naive, v) + rows("d", "a+b", "offline", gb, v)
    return pd.DataFrame(data)


def test_claim14_reads_eight_differences_across_the_optimizers():
    good = baselines.table3_claims(table3_runs(-4, 71), NO_WEIGHTS)
    assert verdict(good, 14) == REPRODUCED
    assert verdict(good, 14) == REPRODUCED and good.evidence.item().count("pts [") == 8
    # the adaptive optimizers' naive gap no larger than SGD's: only that part fails
    smaller_gap = baselines.table3_claims(table3_runs(0, 71), NO_WEIGHTS)
    assert verdict(smaller_gap, 14) == PARTLY


def test_a_learned_weight_that_runs_away_and_falls_is_named_with_its_accuracy():
    # seed 0: the fused head's weight grows to 0.9, then the run blows up (chance at the end)
    paths = {0: (0.25, 0.9, 0.0), 1: (0.25, 0.5, 0.6)}
    accs = {0: (0.8, 0.9, 0.1), 1: (0.8, 0.85, 0.9)}
    learned = pd.DataFrame(
        [
            {
                "dataset": "d",
                "seed": seed,
                "epoch": epoch,
                "head": head,
                "weight": w if head == "joint" else (1 - w) / 2,
            }
            for seed, path in paths.items()
            for epoch, w in enumerate(path)
            for head in ("a", "b", "joint")
        ]  # fmt: skip
    )
    history = pd.DataFrame(
        [
            {
                "dataset": "d",
                "seed": seed,
                "method": "uncertainty",
                "epoch": epoch,
                "head": "joint",
                "split": split,
                "acc": acc,
                "loss": 1 - acc,
            }
            for seed, path in accs.items()
            for epoch, acc in enumerate(path)
            for split in ("train_subset", "test")
        ]  # fmt: skip
    )
    table = baselines.learned_weight_drift(learned, history)
    assert list(table.peak_joint_weight) == [0.9, 0.6] and list(table.peak_epoch) == [1, 2]
    assert list(table.last_test_acc) == pytest.approx([10.0, 90.0])
    text = baselines.learned_weight_findings(table)["d"]
    assert "peaks at 0.75 (median over 2 seeds, at epoch 1)" in text
    assert "in 1 of 2 seeds (0) it has fallen below 0.05" in text
    assert "end at 10.0% test accuracy (the others at 90.0%)" in text
    fallen = baselines.learned_weight_findings(table[table.seed == 0])["d"]
    assert fallen.endswith("end at 10.0% test accuracy.")
    steady = baselines.learned_weight_findings(table[table.seed == 1])["d"]
    assert steady.endswith("in no seed has it fallen below 0.05 by the last epoch.")
