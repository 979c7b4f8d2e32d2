"""A trainer that knows nothing about the model, the data set or G-Blend.

The model maps a dict of modality tensors to a dict of per-head logits; the trainer minimises
a weighted sum of the heads' cross-entropy losses (naive training is the fused head alone with
weight 1; G-Blend passes its weights) and records, every epoch, the loss and accuracy of every
head on a fixed train subset T', on heldout V, on val and on test, in eval mode.

Data sets here fit in memory, so the tensors are moved to the device once and mini-batches are
indexed on the device: a per-batch ``DataLoader`` would cost more than the small models do.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

OPTIMIZERS = ("sgd", "adam", "adagrad")
TRAIN_SUBSET = "train_subset"  # T' in the paper: a fixed subset of train, for L^T
EVAL_SPLITS = (TRAIN_SUBSET, "heldout", "val", "test")
REQUIRED_SPLITS = ("train", "heldout", "val", "test")


@dataclass
class TrainConfig:
    """Optimisation settings; one instance describes one training run."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = ()  # epochs after which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    select_head: str = "joint"  # the head whose val accuracy selects the best epoch
    restore_best: bool = True  # end with the weights of the best val epoch
    train_subset_size: int = 1000  # size of T'
    eval_batch_size: int = 4096
    seed: int = 0
    device: str = "auto"
    progress: bool = False


def resolve_device(device: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, Adam or AdaGrad, as compared in the paper's Table 3."""
    name = config.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    index: torch.Tensor,
    batch_size: int = 4096,
) -> dict[str, tuple[float, float]]:
    """Per-head (mean cross-entropy, accuracy) on ``index``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum: dict[str, float] = {}
    correct: dict[str, int] = {}
    for start in range(0, len(index), batch_size):
        batch = index[start : start + batch_size]
        target = y[batch]
        for head, logits in model({m: t[batch] for m, t in x.items()}).items():
            loss = F.cross_entropy(logits, target, reduction="sum")
            loss_sum[head] = loss_sum.get(head, 0.0) + float(loss)
            correct[head] = correct.get(head, 0) + int((logits.argmax(1) == target).sum())
    model.train(was_training)
    n = len(index)
    return {head: (loss_sum[head] / n, correct[head] / n) for head in loss_sum}


class Trainer:
    """Train one model; ``fit`` returns ``self`` with the learned state in ``*_`` attributes.

    Attributes after ``fit``: ``model_`` (on ``device_``, with the best val epoch's weights if
    ``restore_best``), ``history_`` (a tidy DataFrame: epoch, head, split, loss, acc; epoch 0
    is the model before training), ``best_epoch_``, ``epochs_run_``, ``seconds_``,
    ``train_seconds_`` (time in optimisation steps only) and ``device_``.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit(
        self,
        model: nn.Module,
        x: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        splits: Mapping[str, np.ndarray],
        loss_weights: Mapping[str, float] | None = None,
    ) -> Trainer:
        cfg = self.config
        missing = [s for s in REQUIRED_SPLITS if s not in splits]
        if missing:
            raise ValueError(f"splits lack {missing}; need {', '.join(REQUIRED_SPLITS)}")
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        started = time.perf_counter()
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # dropout draws from the global generator
        shuffle = torch.Generator().manual_seed(cfg.seed)
        model = model.to(device)
        x_dev = {m: t.to(device) for m, t in x.items()}
        y_dev = y.to(device)
        index = {s: torch.as_tensor(np.asarray(splits[s]), dtype=torch.long) for s in splits}
        train_index = index["train"].to(device)
        rng = np.random.default_rng(cfg.seed)
        subset_size = min(cfg.train_subset_size, len(train_index))
        subset = np.sort(rng.choice(len(train_index), size=subset_size, replace=False))
        eval_index = {
            TRAIN_SUBSET: train_index[torch.as_tensor(subset)],
            **{s: index[s].to(device) for s in ("heldout", "val", "test")},
        }
        weights = dict(loss_weights) if loss_weights is not None else None
        optimizer = make_optimizer(model.parameters(), cfg)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma
        )

        rows: list[dict] = []

        def record(epoch: int) -> float:
            for split, idx in eval_index.items():
                for head, (loss, acc) in evaluate(
                    model, x_dev, y_dev, idx, cfg.eval_batch_size
                ).items():
                    rows.append(
                        {"epoch": epoch, "head": head, "split": split, "loss": loss, "acc": acc}
                    )
            selected = [
                r["acc"]
                for r in rows
                if r["epoch"] == epoch and r["split"] == "val" and r["head"] == cfg.select_head
            ]
            if not selected:
                raise ValueError(f"select_head {cfg.select_head!r} is not a head of the model")
            return selected[0]

        record(0)
        if weights is None:
            weights = {h: 1.0 for h in {r["head"] for r in rows}}
        unknown = sorted(set(weights) - {r["head"] for r in rows})
        if unknown:
            raise ValueError(f"loss weights for unknown heads {unknown}")
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be finite and >= 0, got {weights}")

        best_acc, best_epoch, best_state = -1.0, 0, None
        train_seconds = 0.0
        epochs = tqdm(range(1, cfg.epochs + 1), disable=not cfg.progress, desc="epochs")
        epoch = 0
        for epoch in epochs:
            tick = time.perf_counter()
            model.train()
            order = torch.randperm(len(train_index), generator=shuffle).to(device)
            for start in range(0, len(order), cfg.batch_size):
                batch = train_index[order[start : start + cfg.batch_size]]
                logits = model({m: t[batch] for m, t in x_dev.items()})
                target = y_dev[batch]
                loss = sum(
                    w * F.cross_entropy(logits[h], target) for h, w in weights.items() if w > 0
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds += time.perf_counter() - tick
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {float(loss)} at epoch {epoch}")
            val_acc = record(epoch)
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
                if cfg.restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            epochs.set_postfix(val_acc=f"{val_acc:.3f}", best=best_epoch)
            if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)

        self.model_ = model
        self.history_ = pd.DataFrame(rows)
        self.best_epoch_ = best_epoch
        self.epochs_run_ = epoch
        self.loss_weights_ = weights
        self.train_seconds_ = train_seconds
        self.seconds_ = time.perf_counter() - started
        self.device_ = str(device)
        return self
