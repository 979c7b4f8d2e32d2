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

    ``fit`` is ``start`` + ``train_epochs`` + ``finish``; callers that change the loss weights
    during training (online G-Blend) call ``train_epochs`` several times in between, and the
    optimizer state, the learning-rate schedule and the history carry on across the calls.
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
        self.start(model, x, y, splits)
        self.train_epochs(self.config.epochs, loss_weights)
        return self.finish()

    def start(
        self,
        model: nn.Module,
        x: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        splits: Mapping[str, np.ndarray],
    ) -> Trainer:
        """Move model and data to the device, build the optimizer, record epoch 0."""
        cfg = self.config
        missing = [s for s in REQUIRED_SPLITS if s not in splits]
        if missing:
            raise ValueError(f"splits lack {missing}; need {', '.join(REQUIRED_SPLITS)}")
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        self._started = time.perf_counter()
        self.device_ = str(device := resolve_device(cfg.device))
        torch.manual_seed(cfg.seed)  # dropout draws from the global generator
        self._shuffle = torch.Generator().manual_seed(cfg.seed)
        self.model_ = model.to(device)
        self._x = {m: t.to(device) for m, t in x.items()}
        self._y = y.to(device)
        index = {s: torch.as_tensor(np.asarray(splits[s]), dtype=torch.long) for s in splits}
        self._train_index = index["train"].to(device)
        rng = np.random.default_rng(cfg.seed)
        subset_size = min(cfg.train_subset_size, len(self._train_index))
        subset = np.sort(rng.choice(len(self._train_index), size=subset_size, replace=False))
        self._eval_index = {
            TRAIN_SUBSET: self._train_index[torch.as_tensor(subset)],
            **{s: index[s].to(device) for s in ("heldout", "val", "test")},
        }
        self.optimizer_ = make_optimizer(self.model_.parameters(), cfg)
        self._schedule = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer_, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma
        )
        self._rows: list[dict] = []
        self.epochs_run_ = 0
        self.train_seconds_ = 0.0
        self.best_epoch_, self._best_acc, self._best_state = 0, -1.0, None
        self.stopped_ = False
        self._record(0)
        self.heads_ = tuple(dict.fromkeys(r["head"] for r in self._rows))
        return self

    @property
    def history_(self) -> pd.DataFrame:
        return pd.DataFrame(self._rows)

    @property
    def lr_(self) -> float:
        """The learning rate the next epoch will use."""
        return float(self.optimizer_.param_groups[0]["lr"])

    def measure(self, split: str) -> dict[str, tuple[float, float]]:
        """Per-head (loss, acc) of the current weights on one of ``EVAL_SPLITS``."""
        return evaluate(
            self.model_, self._x, self._y, self._eval_index[split], self.config.eval_batch_size
        )

    def _record(self, epoch: int) -> float:
        cfg = self.config
        val_acc = None
        for split in self._eval_index:
            for head, (loss, acc) in self.measure(split).items():
                self._rows.append(
                    {"epoch": epoch, "head": head, "split": split, "loss": loss, "acc": acc}
                )
                if split == "val" and head == cfg.select_head:
                    val_acc = acc
        if val_acc is None:
            raise ValueError(f"select_head {cfg.select_head!r} is not a head of the model")
        return val_acc

    def _check_weights(self, loss_weights: Mapping[str, float] | None) -> dict[str, float]:
        weights = (
            dict(loss_weights) if loss_weights is not None else dict.fromkeys(self.heads_, 1.0)
        )
        unknown = sorted(set(weights) - set(self.heads_))
        if unknown:
            raise ValueError(f"loss weights for unknown heads {unknown}")
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be finite and >= 0, got {weights}")
        if not any(w > 0 for w in weights.values()):
            raise ValueError("at least one loss weight must be positive")
        return weights

    def train_epochs(
        self,
        n: int,
        loss_weights: Mapping[str, float] | None = None,
        record_every_epoch: bool = True,
    ) -> Trainer:
        """Train ``n`` more epochs on the weighted sum of head losses (default: all heads, 1).

        With ``record_every_epoch=False`` only the last of the ``n`` epochs is measured (the
        G-Blend estimation copies need the losses before and after, nothing in between).
        """
        cfg = self.config
        weights = self._check_weights(loss_weights)
        self.loss_weights_ = weights
        model, x, y = self.model_, self._x, self._y
        last = self.epochs_run_ + n
        bar = tqdm(range(self.epochs_run_ + 1, last + 1), disable=not cfg.progress, desc="epochs")
        for epoch in bar:
            if self.stopped_:
                break
            tick = time.perf_counter()
            model.train()
            order = torch.randperm(len(self._train_index), generator=self._shuffle)
            order = order.to(self._train_index.device)
            for start in range(0, len(order), cfg.batch_size):
                batch = self._train_index[order[start : start + cfg.batch_size]]
                logits = model({m: t[batch] for m, t in x.items()})
                target = y[batch]
                loss = sum(
                    w * F.cross_entropy(logits[h], target) for h, w in weights.items() if w > 0
                )
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
            self._schedule.step()
            if self._train_index.device.type == "cuda":
                torch.cuda.synchronize(self._train_index.device)
            self.train_seconds_ += time.perf_counter() - tick
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {float(loss)} at epoch {epoch}")
            self.epochs_run_ = epoch
            if not (record_every_epoch or epoch == last):
                continue
            val_acc = self._record(epoch)
            if val_acc > self._best_acc:
                self._best_acc, self.best_epoch_ = val_acc, epoch
                if cfg.restore_best:
                    self._best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(val_acc=f"{val_acc:.3f}", best=self.best_epoch_)
            if cfg.patience is not None and epoch - self.best_epoch_ >= cfg.patience:
                self.stopped_ = True
        return self

    def finish(self) -> Trainer:
        """Restore the best val epoch's weights (if ``restore_best``) and stop the clock."""
        if self._best_state is not None:
            self.model_.load_state_dict(self._best_state)
        self.seconds_ = time.perf_counter() - self._started
        return self
