"""The grid runner: caching, resuming after a kill, and the Table 1 analysis."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from gblend import experiments as ex
from gblend import results as gres
from gblend.experiments import runner
from gblend.experiments.stats import HIGHER, LOWER, NO_DIFFERENCE, paired_difference

# A small grid whose units take a fraction of a second each at smoke scale.
GRID = {"scale": "smoke", "datasets": "mfeat", "epochs": 6}


def table1(results_dir, jobs: int = 1, **changes):
    grid = ex.EXPERIMENTS["table1"].grid(**{**GRID, **changes})
    res = ex.run(grid, str(results_dir), progress=False, jobs=jobs)
    return res.runs, res.history


def result_files(root):
    return sorted(root.rglob(f"*{gres.RECORD_SUFFIX}"))


def test_rerun_skips_finished_units(tmp_path, monkeypatch):
    runs, _ = table1(tmp_path)
    files = result_files(tmp_path)
    assert len(files) == len(runs) == 7
    stamps = [f.stat().st_mtime_ns for f in files]

    def must_not_run(unit):
        raise AssertionError(f"unit {unit.combo} was run again")

    monkeypatch.setattr(runner, "run_unit", must_not_run)
    again, _ = table1(tmp_path)
    pd.testing.assert_frame_equal(runs, again)
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_a_changed_setting_is_a_new_unit(tmp_path):
    table1(tmp_path)
    table1(tmp_path, epochs=7)
    assert len(result_files(tmp_path)) == 7 + 7


def test_a_grid_s_keys_are_read_again_without_building_its_data_again(tmp_path, monkeypatch):
    grid = ex.EXPERIMENTS["table1"].grid(**GRID)
    before = ex.missing(grid, str(tmp_path))
    built = []
    load = runner.gdata.load
    monkeypatch.setattr(runner.gdata, "load", lambda *a, **k: built.append(a) or load(*a, **k))
    runner._load.cache_clear()  # as when a page's grids outgrow the data cache
    assert ex.missing(grid, str(tmp_path)) == before and built == []
    runner.load_unit_data(before[0])  # the data themselves are built again where needed
    assert len(built) == 1


def test_result_records_carry_provenance(tmp_path):
    table1(tmp_path)
    record = gres.read_record(result_files(tmp_path)[0])
    for field in ("git_commit", "torch_version", "device", "gblend_version", "cpu_model"):
        assert record["provenance"][field]
    assert record["provenance"]["threads"] >= 1
    assert len(record["data_fingerprint"]) == 64
    assert record["config"]["train"]["epochs"] == 6
    assert set(record["split_sizes"]) == {"train", "heldout", "val", "test"}


def test_the_commit_is_dirty_for_changed_code_not_for_changed_results(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "unit.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.delenv("GBLEND_GIT_COMMIT", raising=False)
    monkeypatch.setattr(gres, "repo_root", lambda: tmp_path)

    def commit():
        gres.git_commit.cache_clear()
        return gres.git_commit()

    try:
        (tmp_path / "results" / "unit.json").unlink()  # a grid recomputing a committed unit
        assert not commit().endswith("-dirty")
        (tmp_path / "code.py").write_text("x = 2\n")
        assert commit().endswith("-dirty")
    finally:
        gres.git_commit.cache_clear()


def test_killed_run_resumes_to_the_same_results(tmp_path):
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    code = (
        "from gblend import experiments as ex; "
        f"ex.run(ex.EXPERIMENTS['table1'].grid(**{GRID!r}), {str(interrupted)!r}, jobs=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not result_files(interrupted) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(result_files(interrupted))
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 1 <= done_before < 7
    # every file present is a complete record: none was left half-written
    for path in result_files(interrupted):
        gres.read_record(path)

    resumed, _ = table1(interrupted)
    reference, _ = table1(clean)
    columns = ["dataset", "combo", "seed", "test_acc", "val_acc", "best_epoch", "key"]
    pd.testing.assert_frame_equal(resumed[columns], reference[columns])


def test_paired_difference_and_direction():
    lower = paired_difference([0.70, 0.71, 0.69], [0.75, 0.77, 0.74])
    assert lower.mean == pytest.approx(-0.0533333, abs=1e-6)
    assert lower.high < 0 and lower.direction == LOWER
    assert paired_difference([0.8, 0.9, 0.85], [0.7, 0.8, 0.76]).direction == HIGHER
    noisy = paired_difference([0.70, 0.80, 0.60], [0.71, 0.70, 0.72])
    assert noisy.low < 0 < noisy.high and noisy.direction == NO_DIFFERENCE
    single = paired_difference([0.9], [0.1])
    assert single.direction == NO_DIFFERENCE and np.isinf(single.high)


def test_labels_separate_contradicted_from_not_detectable():
    from gblend.experiments.stats import label

    up = paired_difference([3.0, 4.0, 3.5], [1.0, 1.5, 1.2])
    down = paired_difference([1.0, 1.5, 1.2], [3.0, 4.0, 3.5])
    noisy = paired_difference([1.0, 5.0, 2.0], [3.0, 1.0, 2.5])
    assert label([(up, HIGHER, "pts"), (up, HIGHER, "pts")]) == "reproduced"
    assert label([(up, HIGHER, "pts"), (noisy, HIGHER, "pts")]) == "partly"
    assert label([(up, HIGHER, "pts"), (down, HIGHER, "pts")]) == "partly"
    assert label([(down, HIGHER, "pts"), (noisy, HIGHER, "pts")]) == "contradicted"
    assert label([(down, LOWER, "pts")]) == "reproduced"
    floor = (noisy.high - noisy.low) / 2
    assert label([(noisy, HIGHER, "pts")]) == (
        f"not detectable (these seeds detect about ±{floor:.2g} pts)"
    )
    assert label([(paired_difference([1.0], [0.0]), HIGHER, "pts")]).startswith("undetermined")


def fake_runs(joint_minus_uni: list[float], at_best_val: list[float] | None = None) -> pd.DataFrame:
    """Runs of a 2-modality data set with a chosen joint-vs-best difference at
    the last epoch (and at the best val epoch: ``at_best_val``, default the same)."""
    runs = []
    early = at_best_val or joint_minus_uni
    for seed, (delta, es_delta) in enumerate(zip(joint_minus_uni, early, strict=True)):
        for combo, n, test, val, train in (
            ("a", 1, 0.80, 0.80, 0.85),
            ("b", 1, 0.50, 0.50, 0.90),
            ("a+b", 2, 0.80 + delta, 0.80 + delta, 0.95),
        ):
            # losses: the joint model fits T' best; b overfits most, the joint more than a
            train_loss = {"a": 0.4, "b": 0.3, "a+b": 0.1}[combo] + 0.01 * seed
            val_loss = train_loss + {"a": 0.5, "b": 1.5, "a+b": 0.8}[combo] + 0.02 * seed**2
            runs.append(
                {
                    "dataset": "d",
                    "variant": "",
                    "combo": combo,
                    "n_modalities": n,
                    "seed": seed,
                    "test_acc_last": test,
                    "val_acc_last": val,
                    "train_subset_acc_last": train,
                    "train_subset_loss_last": train_loss,
                    "val_loss_last": val_loss,
                    "test_acc": test + (es_delta - delta) * (n == 2),
                    "val_acc": val + (es_delta - delta) * (n == 2),
                }
            )
    return pd.DataFrame(runs)


def test_table1_verdicts_follow_the_numbers():
    runs = fake_runs([-0.05, -0.04, -0.06])
    summary = ex.summarize(runs)
    row = summary.iloc[0]
    assert row.best_uni == "a" and row.delta == pytest.approx(-5.0)
    assert row.verdict == LOWER
    verdicts = ex.claims(runs).set_index("claim").verdict
    assert verdicts[1] == "reproduced"
    assert verdicts[2] == "reproduced"  # joint fits train better and generalises worse
    assert verdicts[3] == "reproduced"  # b overfits most, joint more than a

    better = fake_runs([0.05, 0.04, 0.06])
    assert ex.summarize(better).iloc[0].verdict == HIGHER
    assert ex.claims(better).set_index("claim").verdict[1] == "contradicted"
    noisy = fake_runs([0.03, -0.04, 0.02])
    assert (
        ex.claims(noisy)
        .set_index("claim")
        .verdict[1]
        .startswith("not detectable (these seeds detect about ±")
    )


def test_claims_are_judged_on_the_fixed_schedule_with_early_stopping_beside():
    """Joint below the best uni-modal model at the last epoch, above it at the best val epoch:
    both rows are in the table, and claim 1 follows the last epoch."""
    runs = fake_runs([-0.05, -0.04, -0.06], at_best_val=[0.04, 0.05, 0.06])
    summary = ex.summarize(runs).set_index("selection")
    assert summary.verdict["last"] == LOWER and summary.delta["last"] == pytest.approx(-5.0)
    assert summary.verdict["best_val"] == HIGHER
    claim1 = ex.claims(runs).set_index("claim").loc[1]
    assert claim1.verdict == "reproduced"
    assert "best val epoch (early stopping): 0 below, 1 above" in claim1.evidence
    shown = ex.side_by_side(ex.summarize(runs), gres.paper_table1())
    assert list(shown["read at"]) == list(ex.SELECTIONS.values())


def test_a_record_is_read_at_its_last_epoch_and_at_its_best_val_epoch():
    grid = ex.EXPERIMENTS["table1"].grid("smoke", "synthetic", epochs=2, device="cpu")
    record = ex.run_unit(next(u for u in grid if len(u.modalities) == 2)).to_json()
    # a history whose best val epoch (1) is not its last (2)
    rows = [(epoch, head, split, acc) for epoch, acc in ((0, 0.3), (1, 0.9), (2, 0.7))
            for head in ("joint", "a") for split in ("val", "test")]  # fmt: skip
    history = {"epoch": [r[0] for r in rows], "head": [r[1] for r in rows],
               "split": [r[2] for r in rows], "acc": [r[3] for r in rows],
               "loss": [1 - r[3] for r in rows]}  # fmt: skip
    rec = ex.RunRecord.from_json({**record, "history": history, "best_epoch": 1,
                                  "epochs_run": 2, "metrics": {"test_acc": 0.9}})  # fmt: skip
    assert rec.last_metrics == {
        "val_acc_last": 0.7,
        "val_loss_last": pytest.approx(0.3),
        "test_acc_last": 0.7,
        "test_loss_last": pytest.approx(0.3),
    }
    frame = ex.Results([rec]).runs
    assert frame[ex.metric_column("test", selection="last")].item() == 0.7
    assert frame[ex.metric_column("test", selection="best_val")].item() == 0.9
    with pytest.raises(ValueError, match="unknown selection"):
        ex.metric_column("test", selection="first")


def _pooled_test_accuracy(per_class, labels):
    counts = np.bincount(labels, minlength=len(per_class))
    return sum(a * n for a, n in zip(per_class, counts, strict=True) if a is not None) / len(labels)


@pytest.mark.parametrize("batched", [False, True])
def test_a_record_has_each_class_at_the_last_and_the_best_val_epoch(batched):
    grid = ex.EXPERIMENTS["table2"].grid("smoke", "mfeat", epochs=6, device="cpu")
    unit = next(u for u in grid if u.method == "offline")
    if batched:  # a batch of one seed gives the same record as run_unit
        unit = next(u for u in grid if u.method == "uniform")
        (rec,) = runner.run_batch([unit])
    else:
        rec = ex.run_unit(unit)
    data = runner.load_unit_data(unit)
    labels = data.y[data.splits["test"]].numpy()
    assert rec.classes == list(data.classes)
    for selection, metrics in (("last", rec.last_metrics), ("best_val", rec.metrics)):
        test = rec.class_accuracy(selection)["test"]
        assert set(test) == {*unit.modalities, "joint"}  # every head of the multi-head model
        name = "test_acc_last" if selection == "last" else "test_acc"
        assert _pooled_test_accuracy(test["joint"], labels) == pytest.approx(metrics[name])
    frame = ex.Results([rec]).classes
    heads = len(unit.modalities) + 1
    assert len(frame) == 2 * 2 * heads * len(data.classes)  # selections, splits, heads, classes
    stopped = ex.RunRecord.from_json({**rec.to_json(), "config": {"train": {"patience": 2}}})
    assert stopped.class_accuracy("last") == rec.class_acc["best_val"]
    older = ex.RunRecord.from_json({k: v for k, v in rec.to_json().items() if k != "class_acc"})
    with pytest.raises(KeyError, match="delete its result file"):
        older.class_accuracy()


def test_compute_command_runs_the_grid_over_processes(tmp_path, capsys):
    from gblend.cli import main

    args = ["compute", "table1", "--scale", "smoke", "--datasets", "mfeat", "--quiet"]
    assert main([*args, "--results-dir", str(tmp_path), "--jobs", "2"]) == 0
    assert len(result_files(tmp_path)) == 7
    assert "7 to train; 2 processes x 1 threads" in capsys.readouterr().out
    assert main(["compute", "nope", "--results-dir", str(tmp_path)]) == 2
    assert main([*args, "--datasets", "kinetics", "--results-dir", str(tmp_path)]) == 2


def units(**changes):
    return ex.EXPERIMENTS["table1"].grid(**{"scale": "smoke", "datasets": "mfeat", **changes})


def test_batched_grid_caches_each_unit_and_matches_one_at_a_time(tmp_path):
    grid = [u for u in units(seeds=3, epochs=4, device="cpu") if u.combo in ("pix", "pix+fou")]
    one_by_one = runner.run_grid(grid, str(tmp_path / "single"), progress=False, jobs=1)
    batched = runner.run_grid(grid, str(tmp_path / "batched"), progress=False, jobs=1, batch_runs=3)
    assert len(result_files(tmp_path / "batched")) == len(grid) == 6
    assert {r.batched for r in batched} == {3}
    for a, b in zip(one_by_one, batched, strict=True):
        assert (a.key, a.seed, a.combo) == (b.key, b.seed, b.combo)
        np.testing.assert_allclose(a.history["loss"], b.history["loss"], atol=1e-4)
        np.testing.assert_allclose(a.history["acc"], b.history["acc"], atol=1e-6)
    # a rerun finds every unit cached, batched or not
    again = runner.run_grid(grid, str(tmp_path / "batched"), progress=False, batch_runs=3)
    assert [r.key for r in again] == [r.key for r in batched]


def test_parallel_grid_matches_serial_and_resumes(tmp_path, monkeypatch):
    grid = units(epochs=2, device="cpu").units()[:4]
    serial = runner.run_grid(grid, str(tmp_path / "serial"), progress=False, jobs=1)
    parallel = runner.run_grid(grid, str(tmp_path / "parallel"), progress=False, jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        assert a.key == b.key and a.combo == b.combo
        # one thread per process here against the default count: sums may round differently
        assert b.metrics["test_loss"] == pytest.approx(a.metrics["test_loss"], abs=1e-4)
        assert b.provenance["threads"] == 1
    monkeypatch.setattr(runner, "_run_chunk", lambda chunk: pytest.fail("ran a cached unit"))
    again = runner.run_grid(grid, str(tmp_path / "parallel"), progress=False, jobs=2)
    assert [r.key for r in again] == [r.key for r in parallel]


def test_units_differing_in_seed_and_learning_rate_share_a_batch(tmp_path):
    from dataclasses import replace

    grid = [u for u in units(seeds=3, device="cpu") if u.combo == "pix"]
    grid += [replace(u, train=replace(u.train, lr=u.train.lr / 2)) for u in grid]
    _, chunks = runner._plan(grid, str(tmp_path), batch_runs=6, run_missing=True)
    assert [len(c) for c in chunks] == [6]
    # another architecture (two modalities) never joins them
    other = [u for u in units(device="cpu") if "+" in u.combo]
    _, chunks = runner._plan(grid + other[:1], str(tmp_path), batch_runs=8, run_missing=True)
    assert sorted(len(c) for c in chunks) == [1, 6]


def test_a_damaged_result_file_is_named_moved_aside_and_recomputed(tmp_path):
    runs, _ = table1(tmp_path)
    victim = result_files(tmp_path)[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match=f"damaged result file .*{victim.name}"):
        again, _ = table1(tmp_path)
    key = victim.name.removesuffix(gres.RECORD_SUFFIX)
    assert victim.exists() and gres.read_record(victim)["key"] == key
    assert len(list(victim.parent.glob(f"{victim.name}.damaged-*"))) == 1
    pd.testing.assert_frame_equal(runs[["combo", "seed", "key"]], again[["combo", "seed", "key"]])


def test_execution_plan_spends_the_cores():
    import os

    cpu = ex.execution_plan("cpu")
    assert cpu.jobs == (os.cpu_count() or 1) and cpu.threads == 1 and cpu.batch_runs == 1
    assert ex.execution_plan("cpu", jobs=1).threads == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="jobs"):
        ex.execution_plan("cpu", jobs=-1)


def test_rerun_check_compares_a_fresh_rerun_with_the_committed_records(tmp_path):
    from gblend.experiments.rerun import rerun_check

    grid = ex.EXPERIMENTS["table2"].grid("smoke", "mfeat")
    ex.run(grid, str(tmp_path), progress=False, jobs=1)
    with pytest.raises(ValueError, match="not committed in full"):
        rerun_check("table2", "smoke", results_dir=str(tmp_path / "empty"), datasets="mfeat")
    same = rerun_check("table2", "smoke", results_dir=str(tmp_path), jobs=1, datasets="mfeat")
    assert list(same.method) == ["naive", "offline"] and set(same.combo) == {"pix+fou+mor"}
    assert (same.best_epoch_committed == same.best_epoch_rerun).all()
    assert same.history_max_loss_difference.max() < 1e-5  # same machine, same threads
    # a committed record that differs is reported as it differs
    victim = next(
        p
        for p in result_files(tmp_path)
        if gres.read_record(p)["method"] == "naive" and "+" in gres.read_record(p)["combo"]
    )
    record = gres.read_record(victim)
    record["metrics"]["test_acc"] -= 0.25
    gres.write_record_atomic(victim, record)
    moved = rerun_check("table2", "smoke", results_dir=str(tmp_path), jobs=1, datasets="mfeat")
    assert moved.set_index("method").test_acc_difference["naive"] == pytest.approx(0.25)


def test_recomputed_folders_are_compared_unit_by_unit(tmp_path):
    from gblend import bench
    from gblend.experiments.rerun import compare_folders

    committed, rerun = str(tmp_path / "committed"), str(tmp_path / "rerun")
    grid = ex.EXPERIMENTS["table1"].grid("smoke", "mfeat")
    for folder in (committed, rerun):
        ex.run_grid(list(grid), folder, progress=False, jobs=1)
    victim = result_files(tmp_path / "rerun")[0]
    record = gres.read_record(victim)
    record["metrics"]["test_acc"] += 0.1
    gres.write_record_atomic(victim, record)
    frame = compare_folders(rerun, "smoke", ("table1",), committed, "mfeat")
    assert len(frame) == len(list(grid))
    assert sorted(frame.test_acc_difference.round(6).unique()) == [0.0, 0.1]
    summary = bench.rerun_summary(frame.assign(file="f"))
    assert summary.units.item() == len(frame)
    assert summary.test_acc_points_max.item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="no unit"):
        compare_folders(str(tmp_path / "empty"), "smoke", ("table1",), committed, "mfeat")


def test_claims_on_policy_fallback_weights_are_undetermined():
    from gblend.experiments.blending import offline_weight_health, with_weight_health

    def weights(modality_fallback: str, joint_fallback: str) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "combo": "a+b",
                    "method": "offline",
                    "super_epoch": 0,
                    "seed": seed,
                    "head": head,
                    "fallbacks": joint_fallback if head == "joint" else modality_fallback,
                }
                for seed in (0, 1)
                for head in ("a", "b", "joint")
            ]  # fmt: skip
        )

    row = {"verdict": "reproduced", "evidence": "vs naive +1.0"}
    fell = offline_weight_health(weights("min_weight", ""), "a+b")
    assert fell == (True, "offline weights: 4 of 4 modality-head estimates are fallbacks")
    assert with_weight_health(row, *fell)["verdict"] == "degenerate estimate"
    half = weights("min_weight", "").assign(
        fallbacks=lambda w: w.fallbacks.where((w.seed == 0) | (w["head"] == "joint"), "")
    )
    assert offline_weight_health(half, "a+b")[0] is False  # 2 of 4: not mostly
    estimated = offline_weight_health(weights("", "min_weight"), "a+b")
    assert not estimated[0] and estimated[1].endswith("floor in seed 0, 1")
    assert with_weight_health(row, *estimated)["verdict"] == "reproduced"


def test_claim9_on_online_weights_that_are_mostly_fallbacks_is_a_degenerate_estimate():
    from gblend.experiments.blending import figure5_claims

    def weights(fallback_at: set[int]) -> pd.DataFrame:
        # head a's weight moves from 0.1 to 0.8 across super-epochs, seeds agreeing
        return pd.DataFrame(
            [
                {
                    "dataset": "d",
                    "variant": "",
                    "method": "online_probed",
                    "seed": seed,
                    "super_epoch": k,
                    "head": head,
                    "weight": w if head == "a" else (1 - w) / 2,
                    "fallbacks": "uniform" if k in fallback_at and head != "joint" else "",
                }
                for seed in range(3)
                for k, w in enumerate((0.1, 0.5, 0.8))
                for head in ("a", "b", "joint")
            ]  # fmt: skip
        )

    probe = {"dataset": "d", "variant": "", "end_epoch": 5, "seeds": 3, "difference": 1.0,
             "low": 0.5, "high": 1.5, "verdict": "higher"}  # fmt: skip
    diffs = pd.DataFrame([probe])

    def claim9(fallback_at: set[int]) -> pd.Series:
        claims = figure5_claims(weights(fallback_at), diffs)
        return claims[claims.claim == 9].iloc[0]

    estimated = claim9(set())
    assert estimated.verdict == "reproduced"
    assert "online weights: 0 of 18 modality-head estimates are fallbacks" in estimated.evidence
    assert claim9({0}).verdict == "reproduced"  # a third of the estimates: not mostly
    fell = claim9({0, 1})
    assert fell.verdict == "degenerate estimate"
    assert "12 of 18 modality-head estimates are fallbacks" in fell.evidence


def test_a_collapse_in_one_seed_is_named_not_called_undetectable():
    from gblend.experiments.blending import claim_row

    def part(per_seed):
        per_seed = pd.Series(per_seed, dtype=float)
        return paired_difference(per_seed, [0.0] * len(per_seed)), per_seed

    collapsed = claim_row("d", 5, "s", [("vs naive", part([0.5, 0.2, -40.0, 0.1, 0.3]), "higher")])
    assert collapsed["verdict"] == "collapses in 1 of 5 seeds"
    assert "median +0.2; more than 10 pts below in 1 of 5 seeds" in collapsed["evidence"]
    small = claim_row("d", 5, "s", [("vs naive", part([0.5, -0.2, -1.0, 0.1, 0.3]), "higher")])
    assert small["verdict"].startswith("not detectable")
    held = claim_row("d", 5, "s", [("vs naive", part([2.0, 2.5, 1.8, 2.2, 2.1]), "higher")])
    assert held["verdict"] == "reproduced" and "more than" not in held["evidence"]
    # a part that holds makes the claim partly true, a collapse elsewhere or not
    mixed = [
        ("a", part([2.0, 2.5, 1.8, 2.2, 2.1]), "higher"),
        ("b", part([0.5, 0.2, -40.0, 0.1, 0.3]), "higher"),
    ]
    assert claim_row("d", 4, "s", mixed)["verdict"] == "partly"
    # far below is no collapse where the claim expects below (claim 4's remedies)
    below = [("a", part([-18.0, -19.5, -17.0, -20.0, -18.5]), "lower")]
    assert claim_row("d", 4, "s", below)["verdict"] == "reproduced"
    noisy_below = [("a", part([-40.0, 5.0, -2.0, 8.0, 1.0]), "lower")]
    assert claim_row("d", 4, "s", noisy_below)["verdict"].startswith("not detectable")


def test_the_strongest_method_is_named_and_a_tie_is_said_to_be_one():
    def comparison(accs):
        return pd.DataFrame(
            [
                {
                    "dataset": "d",
                    "variant": "",
                    "combo": "a+b",
                    "selection": "last",
                    "method": m,
                    "acc": acc,
                    "vs_naive": acc - accs["naive"],
                    "vs_naive_low": 0.1,
                    "vs_naive_high": 0.9,
                    "vs_naive_verdict": "higher",
                }
                for m, acc in accs.items()
            ]  # fmt: skip
        )

    no_weights = pd.DataFrame(columns=["dataset", "variant", "combo", "method"])
    won = ex.strongest_methods(comparison({"best uni": 99.0, "naive": 90.0, "uniform": 92.5,
                                           "offline": 91.0}), no_weights)  # fmt: skip
    assert won == ["d: equal weights (auxiliary loss) is the strongest, 92.5%, +2.5 pts over "
                   "naive [+0.1, +0.9] (higher)."]  # fmt: skip
    tie = ex.strongest_methods(comparison({"naive": 90.0, "uniform": 92.5, "online": 92.5}),
                               no_weights)  # fmt: skip
    assert tie == ["d: equal weights (auxiliary loss) and online G-Blend tie, 92.5%."]


def test_a_record_file_is_gzipped_json_with_the_same_bytes_each_time(tmp_path):
    record = {"key": "k", "history": {"epoch": list(range(60)) * 16}}
    path = tmp_path / f"k{gres.RECORD_SUFFIX}"
    gres.write_record_atomic(path, record)
    first = path.read_bytes()
    time.sleep(1.1)  # a time stamp in the gzip header would differ now
    gres.write_record_atomic(path, record)
    assert path.read_bytes() == first and gres.read_record(path) == record
    assert len(first) < len(json.dumps(record)) / 5  # the history compresses
