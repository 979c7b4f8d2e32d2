"""A batch of runs trained together gives the histories of the same runs trained one by one."""

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gblend.batched import BatchedTrainer, RunData
from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.train import TrainConfig, Trainer

SPECS = {
    "a": SimpleNamespace(kind="vector", shape=(8,)),
    "b": SimpleNamespace(kind="sequence", shape=(12, 3)),
}
# Batched matrix products sum in another order than single ones. Measured after 5 epochs on
# CPU: losses differ by at most 3e-7 (SGD, AdaGrad) and 4e-5 (Adam), accuracies not at all.
LOSS_ATOL = 1e-4
# Weights are compared to 1e-4 for SGD and AdaGrad only: Adam's step is about lr whatever the
# gradient's size, so an entry whose gradient is at rounding level moves by up to lr per step
# in either direction (measured: 1.8e-3 on one conv weight of the sequence modality's copy).
PARAM_ATOL = 1e-4


def run_data(seed: int, n: int) -> RunData:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = {"a": torch.randn(n, 8, generator=gen), "b": torch.randn(n, 12, 3, generator=gen)}
    x["a"][:, :3] += 2.0 * torch.nn.functional.one_hot(y, 3)
    order = np.random.default_rng(seed).permutation(n)
    cut = int(0.6 * n)
    splits = {
        "train": order[:cut],
        "heldout": order[cut : cut + 20],
        "val": order[cut + 20 : cut + 45],
        "test": order[cut + 45 :],
    }
    return RunData(x, y, splits)


def model(seed: int, heads: bool) -> FusionNet:
    torch.manual_seed(seed)
    return FusionNet(SPECS, 3, ModelConfig(hidden=16, feature_dim=8, modality_heads=heads))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_batch_equals_runs_one_at_a_time(optimizer):
    seeds, sizes = [0, 1, 2], [200, 230, 170]  # different data and split sizes per run
    data = [run_data(s, n) for s, n in zip(seeds, sizes, strict=True)]
    config = TrainConfig(
        epochs=5,
        batch_size=32,
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 0.01,
        lr_milestones=(3,),
        train_subset_size=64,
        device="cpu",
    )
    weights = {"a": 0.3, "b": 0.2, JOINT: 0.5}
    batched = BatchedTrainer(config).fit([model(s, True) for s in seeds], data, seeds, weights)
    for r, seed in enumerate(seeds):
        single = Trainer(TrainConfig(**{**config.__dict__, "seed": seed})).fit(
            model(seed, True), data[r].x, data[r].y, data[r].splits, loss_weights=weights
        )
        a, b = single.history_, batched.histories_[r]
        assert a[["epoch", "head", "split"]].equals(b[["epoch", "head", "split"]])
        np.testing.assert_allclose(a.loss, b.loss, atol=LOSS_ATOL, rtol=0)
        np.testing.assert_allclose(a.acc, b.acc, atol=1e-6, rtol=0)
        assert single.best_epoch_ == batched.best_epochs_[r]
        for k, v in single.model_.state_dict().items():
            torch.testing.assert_close(batched.models_[r].state_dict()[k], v, atol=1e-4, rtol=1e-4)
        assert batched.class_accuracy(r) == single.class_accuracy()


def test_early_stopping_is_per_run():
    seeds = [0, 1]
    data = [run_data(s, 200) for s in seeds]
    config = TrainConfig(
        epochs=30, batch_size=32, lr=0.05, patience=2, train_subset_size=64, device="cpu"
    )
    batched = BatchedTrainer(config).fit(
        [model(s, False) for s in seeds], data, seeds, {JOINT: 1.0}
    )
    for r, seed in enumerate(seeds):
        single = Trainer(TrainConfig(**{**config.__dict__, "seed": seed})).fit(
            model(seed, False), data[r].x, data[r].y, data[r].splits, loss_weights={JOINT: 1}
        )
        assert batched.epochs_run_[r] == single.epochs_run_
        assert batched.histories_[r].epoch.max() == single.history_.epoch.max()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_runs_with_their_own_loss_weights_and_learning_rates(optimizer):
    seeds = [3, 3, 4]  # the same seed twice: only weights and learning rate differ
    data = [run_data(s, 180) for s in seeds]
    weights = [{JOINT: 1.0}, {"a": 0.5, "b": 0.1, JOINT: 0.4}, {"b": 1.0}]
    lrs = [0.05, 0.02, 0.01] if optimizer == "sgd" else [0.01, 0.003, 0.02]
    config = TrainConfig(
        epochs=4,
        batch_size=32,
        optimizer=optimizer,
        lr_milestones=(2,),
        train_subset_size=64,
        device="cpu",
    )
    batched = BatchedTrainer(config).fit(
        [model(s, True) for s in seeds], data, seeds, weights, lrs=lrs
    )
    for r, seed in enumerate(seeds):
        single_config = TrainConfig(**{**config.__dict__, "seed": seed, "lr": lrs[r]})
        single = Trainer(single_config).fit(
            model(seed, True), data[r].x, data[r].y, data[r].splits, loss_weights=weights[r]
        )
        a, b = single.history_, batched.histories_[r]
        np.testing.assert_allclose(a.loss, b.loss, atol=LOSS_ATOL, rtol=0)
        np.testing.assert_allclose(a.acc, b.acc, atol=1e-6, rtol=0)
        assert single.best_epoch_ == batched.best_epochs_[r]
    # the two runs of seed 3 really trained differently
    assert not np.allclose(batched.histories_[0].loss, batched.histories_[1].loss)


def test_optimizer_blocks_give_the_same_runs(monkeypatch):
    """On a CPU the optimizer walks the flat parameters in blocks (here of 7 columns), on a GPU
    in one piece: both give the runs of the single trainer."""
    from gblend import batched

    seeds, lrs = [0, 1], [0.01, 0.02]
    data = [run_data(s, 150) for s in seeds]
    config = TrainConfig(epochs=3, batch_size=32, optimizer="adam", train_subset_size=64)
    weights = [{JOINT: 1.0}, {"a": 0.5, JOINT: 0.5}]  # run 0 leaves head a unused

    def fit():
        models = [model(s, True) for s in seeds]
        return BatchedTrainer(config).fit(models, data, seeds, weights, lrs=lrs)

    whole = fit()
    monkeypatch.setattr(batched._Optimizer, "CPU_BLOCK_BYTES", 4 * len(seeds) * 7)
    blocks = fit()
    for r, seed in enumerate(seeds):
        single = Trainer(TrainConfig(**{**config.__dict__, "seed": seed, "lr": lrs[r]})).fit(
            model(seed, True), data[r].x, data[r].y, data[r].splits, loss_weights=weights[r]
        )
        np.testing.assert_allclose(blocks.histories_[r].loss, single.history_.loss, atol=LOSS_ATOL)
        for k, v in whole.models_[r].state_dict().items():
            torch.testing.assert_close(blocks.models_[r].state_dict()[k], v, rtol=0, atol=0)


def test_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        BatchedTrainer().fit([model(0, False)], [], [0], {JOINT: 1.0})
    with pytest.raises(ValueError, match="one learning rate per run"):
        BatchedTrainer().fit([model(0, False)], [run_data(0, 100)], [0], {JOINT: 1.0}, [0.1, 0.2])


# --- every way the study trains ---------------------------------------------------------------


def assert_same_runs(config, seeds, data, weights, lrs=None, last_only=False):
    """Batched runs equal the single trainer's runs with replace(config, seed, lr), to
    LOSS_ATOL for losses and exactly for accuracies, best epochs, epochs run and the set of
    parameters trained. ``last_only``: the single trainer records only epoch 0 and the last
    (as G-Blend's estimation copies do); the batched histories are compared on those epochs."""
    per_run = weights if isinstance(weights, list) else [weights] * len(seeds)
    models = [model(s, True) for s in seeds]
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    batched = BatchedTrainer(config).fit(models, data, seeds, weights, lrs=lrs)
    for r, seed in enumerate(seeds):
        run_config = replace(config, seed=seed, lr=config.lr if lrs is None else lrs[r])
        single = Trainer(run_config).start(model(seed, True), data[r].x, data[r].y, data[r].splits)
        single.train_epochs(config.epochs, per_run[r], record_every_epoch=not last_only).finish()
        a, b = single.history_, batched.histories_[r]
        if last_only:
            b = b[b.epoch.isin([0, single.epochs_run_])].reset_index(drop=True)
        assert a[["epoch", "head", "split"]].equals(b[["epoch", "head", "split"]])
        np.testing.assert_allclose(a.loss, b.loss, atol=LOSS_ATOL, rtol=0)
        np.testing.assert_allclose(a.acc, b.acc, atol=1e-6, rtol=0)
        if not last_only:  # (best epochs are chosen among the recorded epochs)
            assert single.best_epoch_ == batched.best_epochs_[r]
        assert single.epochs_run_ == batched.epochs_run_[r]
        assert single.loss_weights_ == batched.loss_weights_[r]
        for k, v in single.model_.state_dict().items():
            got = batched.models_[r].state_dict()[k]
            if config.optimizer != "adam":
                torch.testing.assert_close(got, v, atol=PARAM_ATOL, rtol=1e-4)
            # a parameter is trained in both or untouched in both
            assert torch.equal(got, initial[r][k]) == torch.equal(v.cpu(), initial[r][k]), k
    return batched


def config_for(optimizer, **overrides):
    return TrainConfig(
        **{
            "epochs": 3,
            "batch_size": 32,
            "optimizer": optimizer,
            "lr": 0.05 if optimizer == "sgd" else 0.01,
            "lr_milestones": (2,),
            "train_subset_size": 64,
            "device": "cpu",
            **overrides,
        }
    )


SEEDS, SIZES = [0, 1], [150, 170]
SCHEMES = {
    "naive": {JOINT: 1.0},
    "equal_by_default": None,
    "uniform": dict.fromkeys(("a", "b", JOINT), 1 / 3),
    "gblend_per_run": [{"a": 0.62, "b": 0.01, JOINT: 0.37}, {"a": 0.25, "b": 0.4, JOINT: 0.35}],
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_weighting_of_the_study(scheme, optimizer):
    data = [run_data(s, n) for s, n in zip(SEEDS, SIZES, strict=True)]
    assert_same_runs(config_for(optimizer), SEEDS, data, SCHEMES[scheme])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
@pytest.mark.parametrize("head", ["a", "b", JOINT])
def test_gblend_estimation_copies(head, optimizer):
    """A copy trained on one head's loss: a modality's copy sees only its own input (only its
    encoder and head are trained), the joint copy all inputs; no schedule, no restore."""
    data = [run_data(s, n) for s, n in zip(SEEDS, SIZES, strict=True)]
    if head != JOINT:
        data = [RunData({head: d.x[head]}, d.y, d.splits) for d in data]
    config = config_for(
        optimizer, lr_milestones=(), restore_best=False, patience=None, select_head=head
    )
    batched = assert_same_runs(config, SEEDS, data, {head: 1.0}, last_only=True)
    measured = {head} if head != JOINT else {"a", "b", JOINT}  # the joint copy has every head
    assert set(batched.histories_[0]["head"]) == measured


# Not Adam: over this many epochs its runs drift apart by more than LOSS_ATOL (1.04e-4 at
# epoch 2 of seed 0 here; the same drift before the shared loop), and patience is the same
# shared code whatever the optimizer.
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_early_stopping_equals_the_single_runs(optimizer):
    seeds = [1, 2, 3]
    data = [run_data(s, 160) for s in seeds]
    config = config_for(optimizer, epochs=12, patience=1, lr_milestones=())
    batched = assert_same_runs(config, seeds, data, {"a": 0.5, JOINT: 0.5})
    assert min(batched.epochs_run_) < 12  # some run really stopped early


# --- one contract: the same checks and errors as the single trainer ---------------------------

BAD = {
    "optimizer": ({"optimizer": "rmsprop"}, {JOINT: 1.0}, None, "sgd, adam, adagrad"),
    "epochs": ({"epochs": 0}, {JOINT: 1.0}, None, "positive"),
    "unknown_head": ({}, {"nope": 1.0}, None, "unknown heads"),
    "negative": ({}, {"a": -1.0, JOINT: 1.0}, None, ">= 0"),
    "non_finite": ({}, {"a": math.nan, JOINT: 1.0}, None, "finite"),
    "all_zero": ({}, {"a": 0.0, JOINT: 0.0}, None, "positive"),
    "missing_split": ({}, {JOINT: 1.0}, "heldout", "heldout"),
    "select_head": ({"select_head": "nope"}, {JOINT: 1.0}, None, "select_head"),
}


def errors_of_both(config, weights, data):
    errors = []
    for train in (
        lambda: Trainer(config).fit(model(0, True), data.x, data.y, data.splits, weights),
        lambda: BatchedTrainer(config).fit([model(0, True)], [data], [0], weights),
    ):
        with pytest.raises(Exception) as caught:
            train()
        errors.append((type(caught.value), str(caught.value)))
    return errors


@pytest.mark.parametrize("case", sorted(BAD))
def test_both_trainers_reject_bad_input_with_the_same_error(case):
    overrides, weights, drop_split, match = BAD[case]
    data = run_data(0, 150)
    if drop_split:
        data = RunData(data.x, data.y, {k: v for k, v in data.splits.items() if k != drop_split})
    config = TrainConfig(**{"epochs": 1, "batch_size": 32, "device": "cpu", **overrides})
    (single_type, single), (batched_type, batched) = errors_of_both(config, weights, data)
    assert single_type is batched_type is ValueError
    assert single == batched
    assert match in single


def test_both_trainers_stop_on_a_non_finite_loss():
    data = run_data(0, 150)
    config = TrainConfig(epochs=3, batch_size=32, lr=1e30, device="cpu")
    (single_type, single), (batched_type, batched) = errors_of_both(config, {JOINT: 1.0}, data)
    assert single_type is batched_type is FloatingPointError
    assert "at epoch 1" in single and "at epoch 1 of run 0" in batched


def test_optimizer_names_are_case_insensitive_in_both():
    data = [run_data(0, 120)]
    runs = [
        BatchedTrainer(config_for(name, epochs=2)).fit([model(0, True)], data, [0])
        for name in ("adam", "Adam")
    ]
    pd_equal = runs[0].histories_[0].equals(runs[1].histories_[0])
    single = Trainer(replace(config_for("ADAM", epochs=2))).fit(
        model(0, True), data[0].x, data[0].y, data[0].splits
    )
    assert pd_equal and single.loss_weights_ == runs[0].loss_weights_[0]


def test_an_image_encoder_batches_like_the_others():
    """The image encoder's channels-last weights go through vmap and give the single runs."""
    specs = {"img": SimpleNamespace(kind="image", shape=(1, 8, 8)), **SPECS}
    seeds = [0, 1]
    data = []
    for seed in seeds:
        d = run_data(seed, 150)
        image = torch.randn(150, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        data.append(RunData({**d.x, "img": image}, d.y, d.splits))

    def image_model(seed):
        torch.manual_seed(seed)
        return FusionNet(specs, 3, ModelConfig(hidden=16, feature_dim=8, modality_heads=True))

    assert_losses_match_single_runs(image_model, data, seeds)


def assert_losses_match_single_runs(make_model, data, seeds):
    """Batched runs of ``make_model(seed)`` have the single trainer's losses (SGD)."""
    config = config_for("sgd")
    batched = BatchedTrainer(config).fit([make_model(s) for s in seeds], data, seeds, None)
    for r, seed in enumerate(seeds):
        single = Trainer(replace(config, seed=seed)).fit(
            make_model(seed), data[r].x, data[r].y, data[r].splits
        )
        np.testing.assert_allclose(
            single.history_.loss, batched.histories_[r].loss, atol=LOSS_ATOL, rtol=0
        )


@pytest.mark.parametrize("fusion", ["se_gate", "nl_gate"])
def test_gated_fusions_batch_like_late_fusion(fusion):
    """The gates' parameters go through vmap like the encoders': batched runs of a gated
    model are the single runs."""
    seeds = [0, 1]
    data = [run_data(s, 150) for s in seeds]

    def gated(seed):
        torch.manual_seed(seed)
        return FusionNet(SPECS, 3, ModelConfig(hidden=16, feature_dim=8, fusion=fusion))

    assert_losses_match_single_runs(gated, data, seeds)
