from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gblend.models import JOINT, FusionNet, ModelConfig
from gblend.train import EVAL_SPLITS, TrainConfig, Trainer, resolve_device

SPECS = {
    "a": SimpleNamespace(kind="vector", shape=(8,)),
    "b": SimpleNamespace(kind="vector", shape=(6,)),
}


def tiny_task(n: int = 300, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = {"a": torch.randn(n, 8, generator=gen), "b": torch.randn(n, 6, generator=gen)}
    x["a"][:, :3] += 3.0 * torch.nn.functional.one_hot(y, 3)  # modality a carries the class
    order = np.random.default_rng(seed).permutation(n)
    splits = {
        "train": order[:200],
        "heldout": order[200:230],
        "val": order[230:260],
        "test": order[260:],
    }
    return x, y, splits


def fit(epochs=8, heads=False, weights=None, **cfg):
    x, y, splits = tiny_task()
    torch.manual_seed(0)
    model = FusionNet(SPECS, 3, ModelConfig(modality_heads=heads, hidden=16, feature_dim=8))
    config = TrainConfig(
        **{"epochs": epochs, "batch_size": 32, "lr": 0.05, "train_subset_size": 100, **cfg}
    )
    return Trainer(config).fit(model, x, y, splits, loss_weights=weights)


def test_loss_falls_and_accuracy_rises_on_a_learnable_task():
    hist = fit(epochs=10).history_
    train = hist[(hist.split == "train_subset") & (hist["head"] == JOINT)].set_index("epoch")
    assert train.loss[10] < 0.5 * train.loss[0]
    test = hist[(hist.split == "test") & (hist["head"] == JOINT)].set_index("epoch")
    assert test.acc[10] > 0.8


def test_same_seed_gives_the_same_history_bit_for_bit():
    a, b = fit(6), fit(6)
    assert a.history_.equals(b.history_)
    c = fit(6, seed=1)
    assert not a.history_.equals(c.history_)


def test_history_has_every_epoch_head_and_split():
    tr = fit(epochs=4, heads=True)
    hist = tr.history_
    assert sorted(hist.epoch.unique()) == [0, 1, 2, 3, 4]
    assert set(hist.split) == set(EVAL_SPLITS)
    assert set(hist["head"]) == {"a", "b", JOINT}
    assert len(hist) == 5 * 4 * 3
    assert hist[["loss", "acc"]].notna().all().all()


def test_a_head_with_zero_weight_is_not_trained():
    x, y, splits = tiny_task()
    torch.manual_seed(0)
    model = FusionNet(SPECS, 3, ModelConfig(modality_heads=True, hidden=16, feature_dim=8))
    before = model.modality_heads["b"].weight.detach().clone()
    trained_before = model.modality_heads["a"].weight.detach().clone()
    Trainer(TrainConfig(epochs=2, batch_size=32)).fit(
        model, x, y, splits, loss_weights={"a": 0.5, "b": 0.0, JOINT: 0.5}
    )
    assert torch.equal(model.modality_heads["b"].weight.cpu(), before)
    assert not torch.equal(model.modality_heads["a"].weight.cpu(), trained_before)


def test_best_val_epoch_is_restored_and_early_stopping_stops():
    tr = fit(epochs=30, patience=2, lr_milestones=())
    hist = tr.history_
    val = hist[(hist.split == "val") & (hist["head"] == JOINT) & (hist.epoch > 0)]
    assert tr.best_epoch_ == int(val.loc[val.acc.idxmax(), "epoch"])
    assert tr.epochs_run_ <= tr.best_epoch_ + 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_each_optimizer_trains(optimizer):
    tr = fit(epochs=3, optimizer=optimizer, lr=0.01)
    assert tr.history_.loss.notna().all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="sgd, adam, adagrad"):
        fit(epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown heads"):
        fit(epochs=1, weights={"nope": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        fit(epochs=1, heads=True, weights={"a": -1.0, JOINT: 1.0})
    x, y, splits = tiny_task()
    model = FusionNet(SPECS, 3)
    with pytest.raises(ValueError, match="heldout"):
        Trainer().fit(model, x, y, {"train": splits["train"]})


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
