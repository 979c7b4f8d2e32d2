"""G-Blend's measurements and weight estimator, checked against hand-computed values."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gblend.blend import (
    DegeneratePolicy,
    Measurement,
    estimate_weights,
    gb_estimate,
    generalization_gain,
    ogr,
    overfitting,
    overfitting_change,
    super_epochs,
    train_offline,
    train_online,
    uniform_weights,
)
from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.train import TrainConfig

NO_FLOOR = DegeneratePolicy(min_weight=0.0)


def pair(train0, held0, train1, held1, metric="loss"):
    return Measurement(train0, held0, metric), Measurement(train1, held1, metric)


# Hand-computed example: two heads between checkpoints N and N+n.
#   head a: L^T 2.0 -> 1.0, L^V 2.2 -> 1.6:  O 0.2 -> 0.6, dO = 0.4, dG = 0.6
#   head b: L^T 2.0 -> 1.5, L^V 2.1 -> 1.9:  O 0.1 -> 0.4, dO = 0.3, dG = 0.2
#   raw w = dG / dO^2: a 0.6/0.16 = 3.75, b 0.2/0.09 = 2.2222; sum 5.9722
BEFORE, AFTER = pair(
    {"a": 2.0, "b": 2.0}, {"a": 2.2, "b": 2.1}, {"a": 1.0, "b": 1.5}, {"a": 1.6, "b": 1.9}
)


def test_overfitting_generalization_and_ogr_by_hand():
    assert overfitting(BEFORE) == pytest.approx({"a": 0.2, "b": 0.1})
    assert generalization_gain(BEFORE, AFTER) == pytest.approx({"a": 0.6, "b": 0.2})
    assert overfitting_change(BEFORE, AFTER) == pytest.approx({"a": 0.4, "b": 0.3})
    assert ogr(BEFORE, AFTER) == pytest.approx({"a": 0.4 / 0.6, "b": 0.3 / 0.2})


def test_weights_are_dg_over_do_squared_normalised_to_one():
    est = estimate_weights(BEFORE, AFTER, NO_FLOOR)
    assert est.weights == pytest.approx({"a": 3.75 / 5.972222, "b": 2.222222 / 5.972222})
    assert sum(est.weights.values()) == pytest.approx(1.0)
    assert est.fallbacks == []


def test_sign_convention_falling_heldout_loss_is_a_gain():
    # Fig. 3 of the paper prints dG = L^V_{N+n} - L^V_N; Eq. 3 (which we follow) the opposite.
    d_g = generalization_gain(BEFORE, AFTER)
    assert d_g["a"] > 0 and d_g["a"] == pytest.approx(2.2 - 1.6)


def test_invariant_to_a_common_scale_of_the_losses():
    scaled = [
        Measurement(
            {h: 7.5 * v for h, v in m.train.items()}, {h: 7.5 * v for h, v in m.heldout.items()}
        )
        for m in (BEFORE, AFTER)
    ]
    assert estimate_weights(*scaled).weights == pytest.approx(
        estimate_weights(BEFORE, AFTER).weights
    )


def test_invariant_to_the_order_of_heads():
    def reorder(m):
        return Measurement(
            dict(reversed(list(m.train.items()))), dict(reversed(list(m.heldout.items())))
        )

    assert estimate_weights(reorder(BEFORE), reorder(AFTER)).weights == pytest.approx(
        estimate_weights(BEFORE, AFTER).weights
    )


def test_weight_grows_with_generalization_gain():
    weights = []
    for held_a in (1.9, 1.7, 1.5):  # dG of head a grows: 0.3, 0.5, 0.7
        train_a = held_a - 0.6  # O_after stays 0.6, so dO stays 0.4
        _, after = pair({}, {}, {"a": train_a, "b": 1.5}, {"a": held_a, "b": 1.9})
        weights.append(estimate_weights(BEFORE, after, NO_FLOOR).weights["a"])
    assert weights[0] < weights[1] < weights[2]


def test_weight_falls_with_more_overfitting():
    small, large = [
        estimate_weights(
            BEFORE, pair({}, {}, {"a": 1.6 - o, "b": 1.5}, {"a": 1.6, "b": 1.9})[1], NO_FLOOR
        ).weights["a"]
        for o in (0.4, 0.8)
    ]
    assert small > large


def test_accuracy_variant_uses_rises_of_heldout_accuracy():
    before, after = pair(
        {"a": 0.5, "b": 0.5},
        {"a": 0.45, "b": 0.48},
        {"a": 0.9, "b": 0.6},
        {"a": 0.65, "b": 0.55},
        metric="acc",
    )
    # a: dG = 0.20, O 0.05 -> 0.25, dO = 0.20 -> 5.0 ; b: dG = 0.07, O 0.02 -> 0.05 -> 77.78
    est = estimate_weights(before, after, NO_FLOOR)
    assert est.delta_g == pytest.approx({"a": 0.20, "b": 0.07})
    assert est.weights["a"] == pytest.approx(5.0 / (5.0 + 0.07 / 0.03**2))


def test_no_generalization_gives_zero_raw_weight_then_the_floor():
    _, after = pair({}, {}, {"a": 1.0, "b": 1.5}, {"a": 1.6, "b": 2.3})  # b: dG = -0.2
    est = estimate_weights(BEFORE, after, DegeneratePolicy(min_weight=0.05))
    assert est.weights["b"] == pytest.approx(0.05)
    assert est.weights["a"] == pytest.approx(0.95)
    rules = {(f.head, f.rule) for f in est.fallbacks}
    assert ("b", "no_generalization") in rules and ("b", "min_weight") in rules
    assert estimate_weights(BEFORE, after, NO_FLOOR).weights == {"a": 1.0, "b": 0.0}


def test_tiny_overfitting_change_is_floored_not_divided_by():
    _, after = pair({}, {}, {"a": 1.0, "b": 1.8}, {"a": 1.6, "b": 1.9})  # b: dO = 0
    est = estimate_weights(BEFORE, after, NO_FLOOR)
    assert all(math.isfinite(w) for w in est.weights.values())
    assert est.weights["b"] > est.weights["a"]
    assert [f.rule for f in est.fallbacks] == ["overfit_floor"]


def test_non_finite_and_all_degenerate_cases():
    nan_after = Measurement({"a": float("nan"), "b": 1.5}, {"a": 1.6, "b": 1.9})
    est = estimate_weights(BEFORE, nan_after, NO_FLOOR)
    assert est.weights == {"a": 0.0, "b": 1.0}
    assert est.fallbacks[0].rule == "non_finite"

    worse = Measurement({"a": 2.5, "b": 2.5}, {"a": 2.9, "b": 2.8})  # both dG < 0
    est = estimate_weights(BEFORE, worse, context={"super_epoch": 3})
    assert est.weights == pytest.approx({"a": 0.5, "b": 0.5})
    assert any(f.rule == "all_degenerate" and f.context["super_epoch"] == 3 for f in est.fallbacks)


def test_weights_are_never_negative_or_nan_and_sum_to_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        vals = rng.normal(2, 1, size=(4, 3))
        vals[rng.random((4, 3)) < 0.05] = np.nan
        heads = ["a", "b", JOINT]
        before, after = pair(
            *({h: float(v) for h, v in zip(heads, row, strict=True)} for row in vals)
        )
        w = estimate_weights(before, after).weights
        assert all(math.isfinite(v) and v >= 0.01 - 1e-12 for v in w.values())
        assert sum(w.values()) == pytest.approx(1.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="metric"):
        Measurement({"a": 1.0}, {"a": 1.0}, metric="f1")
    with pytest.raises(ValueError, match="same heads"):
        Measurement({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="min_weight"):
        estimate_weights(BEFORE, AFTER, DegeneratePolicy(min_weight=0.5))
    assert uniform_weights(("a", "b", JOINT)) == pytest.approx(
        dict.fromkeys("ab", 1 / 3) | {JOINT: 1 / 3}
    )


def test_super_epochs_cover_the_run():
    assert super_epochs(45, 10, 5) == [(0, 10)] + [(s, 5) for s in range(10, 45, 5)]
    assert super_epochs(12, 5, 3) == [(0, 5), (5, 3), (8, 3), (11, 1)]
    with pytest.raises(ValueError):
        super_epochs(10, 0, 3)


# --- Algorithm 1-3 on a tiny model --------------------------------------------------------------

SPECS = {
    "strong": SimpleNamespace(kind="vector", shape=(6,)),
    "weak": SimpleNamespace(kind="vector", shape=(40,)),
}


def task(n=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    strong = torch.randn(n, 6, generator=gen)
    strong[:, :3] += 2.0 * torch.nn.functional.one_hot(y, 3)
    x = {"strong": strong, "weak": torch.randn(n, 40, generator=gen)}  # no signal: memorise
    order = np.random.default_rng(seed).permutation(n)
    splits = {
        "train": order[:200],
        "heldout": order[200:260],
        "val": order[260:320],
        "test": order[320:],
    }
    return x, y, splits


def model():
    torch.manual_seed(0)
    return FusionNet(SPECS, 3, ModelConfig(modality_heads=True, hidden=32, feature_dim=16))


CONFIG = TrainConfig(epochs=6, batch_size=32, lr=0.05, train_subset_size=100)


def test_gb_estimate_returns_k_plus_1_weights_and_leaves_the_checkpoint_alone():
    x, y, splits = task()
    net = model()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    est, cost = gb_estimate(net, x, y, splits, CONFIG, n_epochs=4)
    assert set(est.weights) == {"strong", "weak", JOINT}
    assert sum(est.weights.values()) == pytest.approx(1.0)
    assert cost["extra_epochs"] == 3 * 4
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    # the noise-only modality memorises and does not generalise: the smallest weight
    assert est.weights["weak"] == min(est.weights.values())
    assert est.delta_g["strong"] > 0


def test_offline_and_online_train_the_multi_head_model_with_the_estimates():
    x, y, splits = task()
    offline = train_offline(model(), x, y, splits, CONFIG, estimate_epochs=3)
    assert len(offline.estimates) == 1 and offline.estimation_epochs == 9
    assert offline.trainer.loss_weights_ == offline.estimates[0].weights
    online = train_online(model(), x, y, splits, CONFIG, warmup=3, length=2)
    assert [e.context["start_epoch"] for e in online.estimates] == [0, 3, 5]
    assert [e.context["n_epochs"] for e in online.estimates] == [3, 2, 1]
    assert online.trainer.epochs_run_ == 6 and online.estimation_epochs == 3 * (3 + 2 + 1)
    hist = online.trainer.history_
    assert sorted(hist.epoch.unique()) == list(range(7))


def test_on_the_synthetic_preset_audio_gets_the_smallest_weight():
    from gblend import data

    ds = data.load("synthetic", seed=0, n_samples=1500)
    torch.manual_seed(0)
    net = FusionNet(ds.specs, ds.n_classes, ModelConfig(modality_heads=True))
    config = TrainConfig(epochs=8, batch_size=64, lr=0.01, train_subset_size=500)
    est, _ = gb_estimate(net, ds.x, ds.y, ds.splits, config, n_epochs=8)
    assert est.weights["audio"] == min(est.weights.values())
    assert est.weights["rgb"] > est.weights["audio"]


def test_finetune_classifier_trains_only_a_fresh_fused_head():
    from gblend.blend import finetune_classifier

    x, y, splits = task()
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = finetune_classifier(net, x, y, splits, CONFIG, epochs=2)
    assert set(acc) == {"train_subset_acc", "heldout_acc", "val_acc", "test_acc"}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # a copy


def test_online_probed_compares_both_branches_at_every_super_epoch():
    x, y, splits = task()
    run = train_online(
        model(), x, y, splits, CONFIG, warmup=3, length=2, probe=True, finetune_epochs=1
    )
    probes = run.probes
    assert [(p["super_epoch"], p["branch"]) for p in probes] == [
        (i, b) for i in range(3) for b in ("gblend", "naive")
    ]
    assert [p["end_epoch"] for p in probes[::2]] == [3, 5, 6]
    assert run.trainer.epochs_run_ == 6 and len(run.estimates) == 3


# --- faster executions of the same runs, against the plain definitions ---------------------------


def copies_one_at_a_time(net, x, y, splits, config, n):
    """Algorithm 1 as written: each head's copy trained alone on its own loss (a modality's
    copy on its own input), measured before and after; the reference for gb_estimate."""
    import copy
    from dataclasses import replace

    from gblend.blend import _measure
    from gblend.train import Trainer

    cfg = replace(config, epochs=n, lr_milestones=(), patience=None, restore_best=False)
    before, after = ({}, {}), ({}, {})
    for head in net.heads:
        inputs = x if head == JOINT else {head: x[head]}
        trainer = Trainer(replace(cfg, select_head=head)).start(
            copy.deepcopy(net), inputs, y, splits
        )
        trainer.train_epochs(n, {head: 1.0}, record_every_epoch=False).finish()
        for (train, held), epoch in ((before, 0), (after, n)):
            train[head], held[head] = _measure(trainer, head, epoch, "loss")
    return estimate_weights(Measurement(*before), Measurement(*after))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_estimation_copies_trained_together_end_as_trained_one_at_a_time(optimizer):
    """Bit for bit: same losses on T' and V, hence the same dG, dO and weights; the joint copy
    draws dropout (0.3 here) as it would alone."""
    x, y, splits = task()
    torch.manual_seed(0)
    net = FusionNet(
        SPECS, 3, ModelConfig(modality_heads=True, hidden=32, feature_dim=16, dropout=0.3)
    )
    config = TrainConfig(
        epochs=3,
        batch_size=32,
        lr=0.05,
        optimizer=optimizer,
        train_subset_size=100,
        seed=4,
        device="cpu",
    )
    together, _ = gb_estimate(net, x, y, splits, config, n_epochs=3)
    alone = copies_one_at_a_time(net, x, y, splits, config, 3)
    assert together.delta_g == alone.delta_g and together.delta_o == alone.delta_o
    assert together.weights == alone.weights


def test_classifier_on_cached_features_equals_one_trained_through_frozen_encoders():
    """The Fig. 5b classifier trained on precomputed trunk features has the history of the
    same classifier trained through the frozen encoders: equal accuracies, losses equal to
    rounding (the features are computed in larger batches), the same best epoch."""
    import copy
    from dataclasses import replace

    from gblend.blend import train_classifier_on_trunk
    from gblend.train import Trainer

    x, y, splits = task()
    torch.manual_seed(0)
    net = FusionNet(
        SPECS, 3, ModelConfig(modality_heads=True, hidden=32, feature_dim=16, dropout=0.3)
    )
    config = replace(CONFIG, device="cpu", seed=2)
    torch.manual_seed(7)  # the fresh head's initial weights
    fast = train_classifier_on_trunk(net, x, y, splits, config, epochs=4)
    torch.manual_seed(7)
    probe = copy.deepcopy(net)
    probe.encoders.requires_grad_(False)
    for layer in probe.fused_head:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    slow = Trainer(replace(config, epochs=4, lr_milestones=(), select_head=JOINT)).fit(
        probe, x, y, splits, {JOINT: 1.0}
    )
    a, b = fast.history_, slow.history_[slow.history_["head"] == JOINT].reset_index(drop=True)
    assert a[["epoch", "split", "acc"]].equals(b[["epoch", "split", "acc"]])
    np.testing.assert_allclose(a.loss, b.loss, rtol=0, atol=1e-6)
    assert fast.best_epoch_ == slow.best_epoch_
