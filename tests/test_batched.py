"""A batch of runs trained together gives the histories of the same runs trained one by one."""

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
