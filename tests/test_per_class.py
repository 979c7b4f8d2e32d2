"""Figure 6's per-class analysis and claim 19's verdict, on hand-made per-class accuracies:
each test fails when the rule stops reading the numbers it names."""

import numpy as np
import pandas as pd
import pytest

from gblend.experiments import per_class
from gblend.experiments.blending import DEGENERATE
from gblend.experiments.stats import CONTRADICTED, NOT_DETECTABLE, REPRODUCED

SEEDS = range(5)
# the second modality's val accuracy per class: informative on classes 0-2, not on 3-5
SECOND_VAL = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
BEST = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.8])


def frames(gain, best=BEST, second_val=SECOND_VAL, collapse_seed=None):
    """Runs and per-class frames of one data set with modalities a (best by val) and b:
    G-Blend = best + ``gain`` per class, with a per-seed jitter (and 30 points less on every
    class in ``collapse_seed``)."""
    runs, classes = [], []
    for seed in SEEDS:
        jitter = 0.004 * np.sin(np.arange(6) + seed)
        blended = gain + jitter - (0.3 if seed == collapse_seed else 0.0)
        for combo, method, val in (("a", "naive", 0.9), ("b", "naive", 0.5),
                                   ("a+b", "naive", 0.85), ("a+b", "offline", 0.9)):  # fmt: skip
            runs.append({"dataset": "d", "variant": "", "combo": combo, "method": method,
                         "seed": seed, "n_modalities": combo.count("+") + 1,
                         "val_acc_last": val, "val_acc": val})  # fmt: skip
            per_split = {
                ("a", "test"): best,
                ("b", "test"): second_val - 0.05,
                ("b", "val"): second_val + jitter,
                ("a+b", "test"): best + (blended if method == "offline" else gain),
            }
            for (c, split), acc in per_split.items():
                if c != combo:
                    continue
                for selection in ("last", "best_val"):
                    for k, value in enumerate(np.clip(acc, 0, 1)):
                        classes.append({"dataset": "d", "combo": combo, "method": method,
                                        "variant": "", "seed": seed, "selection": selection,
                                        "split": split, "head": "joint", "class": k,
                                        "class_name": f"c{k}", "acc": value})  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(classes)


def verdict(gain, weights=None, **kw):
    runs, classes = frames(np.asarray(gain, dtype=float), **kw)
    frame = per_class.per_class_frame(runs, classes)
    weights = pd.DataFrame() if weights is None else weights
    (row,) = per_class.claims(frame, weights).to_dict("records")
    return row, per_class.class_table(frame)


def test_gains_on_the_informative_classes_reproduce_claim19():
    row, table = verdict([0.05, 0.05, 0.05, 0.0, 0.0, 0.0])
    assert row["verdict"] == REPRODUCED, row
    assert "best uni-modal: a, second modality: b" in row["evidence"]
    assert list(table.class_name[:3]) != ["c3", "c4", "c5"]  # most improved first
    assert table.gain.iloc[0] == pytest.approx(5.0, abs=0.5)


def test_gains_on_the_uninformative_classes_contradict_it():
    row, _ = verdict([0.0, 0.0, 0.0, 0.05, 0.05, 0.05])
    assert row["verdict"] == CONTRADICTED, row


def test_gains_spread_evenly_are_not_detectable():
    row, _ = verdict([0.02] * 6)
    assert row["verdict"].startswith(NOT_DETECTABLE), row


def test_a_collapse_in_one_seed_is_named():
    row, _ = verdict([0.02] * 6, collapse_seed=3)
    assert row["verdict"] == "collapses in 1 of 5 seeds", row
    assert "more than 10 pts below in 1 of 5 seeds" in row["evidence"]


def test_a_saturated_best_model_is_not_evidence():
    best = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.9])
    row, _ = verdict([0.0, 0.0, 0.0, 0.0, 0.05, 0.05], best=best)
    assert row["verdict"] == per_class.NOT_EVIDENCE, row
    assert "4 of 6 classes" in row["evidence"]


def test_the_median_class_is_in_neither_half():
    # five classes: the middle one (second modality at 0.5) would decide a tie by order
    frame = pd.DataFrame({"seed": 0, "second_val": [0.9, 0.7, 0.5, 0.3, 0.1],
                          "gain": [0.02, 0.02, 0.5, 0.0, 0.0]})  # fmt: skip
    assert per_class.half_difference(frame).item() == pytest.approx(2.0)


def test_fallback_weights_make_it_a_degenerate_estimate():
    weights = pd.DataFrame([{"dataset": "d", "combo": "a+b", "method": "offline",
                             "super_epoch": 0, "head": h, "seed": s,
                             "fallbacks": "" if h == "joint" else "floor"}
                            for s in SEEDS for h in ("a", "b", "joint")])  # fmt: skip
    row, _ = verdict([0.05, 0.05, 0.05, 0.0, 0.0, 0.0], weights=weights)
    assert row["verdict"] == DEGENERATE, row


def test_a_grid_whose_results_lack_per_class_accuracy_is_not_done(repo_root, tmp_path):
    # Figure 6 shares its units with Tables 1/2, whose older records lack per-class
    # accuracy: a grid with every file on disk but no per-class numbers is not done
    import shutil

    from gblend.experiments import registry
    from gblend.results import read_record, write_record_atomic

    folders = [tmp_path / store / "cpu" / "hapt" for store in ("table1", "gblend")]
    for folder in folders:  # the naive runs are Table 1's, the offline ones Table 2's
        shutil.copytree(repo_root / "results" / folder.relative_to(tmp_path), folder)
    figure6 = registry.get("figure6")
    assert registry._done(figure6, "cpu", "hapt", str(tmp_path))
    for path in folders[1].glob("*.json.gz"):
        write_record_atomic(path, {**read_record(path), "class_acc": {}})
    assert not registry._done(figure6, "cpu", "hapt", str(tmp_path))
