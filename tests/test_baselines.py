"""The baselines the paper says do not fix naive fusion, as options of the same model, trainer
and method registry: each test fails when its option is silently ignored."""

from dataclasses import replace

import pandas as pd
import pytest
import torch
from conftest import two_modality_toy

from gblend import data as gdata
from gblend import experiments as ex
from gblend.experiments import methods as gmethods
from gblend.models import JOINT, LMF_RANK, FusionNet, ModelConfig
from gblend.train import OPTIMIZERS, TrainConfig, Trainer, make_optimizer


@pytest.fixture()
def toy():
    yield from two_modality_toy("toy_baselines")


def unit_of(method, dataset_name, **params):
    grid = ex.Grid.resolve("smoke", dataset_name, methods=(method,), combos="study")
    (unit,) = list(grid)
    return replace(unit, params=gmethods.get(method).make_params(params).resolve(2))


def test_dropout_at_the_concatenation_is_active_in_train_mode_only():
    specs = {
        "a": gdata.ModalitySpec("a", "vector", (4,)),
        "b": gdata.ModalitySpec("b", "vector", (4,)),
    }
    torch.manual_seed(0)
    net = FusionNet(specs, 3, ModelConfig(dropout=0.5))
    x = {"a": torch.randn(64, 4), "b": torch.randn(64, 4)}
    net.train()
    assert not torch.equal(net(x)[JOINT], net(x)[JOINT])  # new masks each call
    net.eval()
    assert torch.equal(net(x)[JOINT], net(x)[JOINT])
    plain = FusionNet(specs, 3, ModelConfig(dropout=0.0)).train()
    assert torch.equal(plain(x)[JOINT], plain(x)[JOINT])


def test_early_stopping_stops_and_restores_the_best_val_weights(toy):
    config = TrainConfig(epochs=40, batch_size=16, lr=0.2, patience=2, train_subset_size=50)
    torch.manual_seed(0)
    net = FusionNet(toy.specs, toy.n_classes)
    trainer = Trainer(config).fit(net, toy.x, toy.y, toy.splits)
    assert trainer.stopped_ and trainer.epochs_run_ < 40
    assert trainer.epochs_run_ - trainer.best_epoch_ == 2
    # the weights it ends with are the best epoch's: their val accuracy is the recorded best
    val = trainer.measure("val")[JOINT][1]
    hist = trainer.history_
    best = hist[(hist.epoch == trainer.best_epoch_) & (hist.split == "val")]
    assert val == pytest.approx(float(best[best["head"] == JOINT].acc.iloc[0]))


def test_pretraining_loads_the_unimodal_encoders_and_freezing_keeps_them(toy):
    unit = unit_of("pretrain", "toy_baselines", freeze=True)
    encoders = gmethods.pretrained_encoders(unit, toy)
    # the encoder of the naive uni-modal network trained on its own, same seed and schedule
    torch.manual_seed(unit.seed)
    alone = FusionNet({"left": toy.specs["left"]}, toy.n_classes, unit.model)
    Trainer(replace(unit.train, restore_best=False)).fit(
        alone, {"left": toy.x["left"]}, toy.y, toy.splits
    )
    for name, tensor in alone.encoders["left"].state_dict().items():
        assert torch.equal(encoders["left"][name], tensor.cpu()), name
    trainer, _ = gmethods.get("pretrain").train(unit, toy)
    for modality in ("left", "right"):
        for name, tensor in trainer.model_.encoders[modality].state_dict().items():
            assert torch.equal(tensor.cpu(), encoders[modality][name]), (modality, name)
    # not frozen: fine-tuning moves them
    free = unit_of("pretrain", "toy_baselines", freeze=False)
    moved, _ = gmethods.get("pretrain").train(free, toy)
    state = moved.model_.encoders["left"].state_dict()
    assert any(not torch.equal(state[n].cpu(), encoders["left"][n]) for n in state)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_is_torch_optims_update(name):
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=1e-3, momentum=0.9)
    torch.manual_seed(0)
    ours = torch.nn.Linear(3, 2)
    theirs = torch.nn.Linear(3, 2)
    theirs.load_state_dict(ours.state_dict())
    reference = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
        "adam": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1e-3),
        "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, weight_decay=1e-3),
    }[name](theirs.parameters())
    mine = make_optimizer(ours.parameters(), config)
    x = torch.randn(8, 3)
    for model, optimizer in ((ours, mine), (theirs, reference)):
        for _ in range(2):  # two steps: momentum and moment estimates enter the second
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_learned_weights_receive_gradients_and_are_kept_over_training(toy):
    from gblend.models import UncertaintyWeights

    weighting = UncertaintyWeights(("a", JOINT))
    losses = {"a": torch.tensor(2.0), JOINT: torch.tensor(0.5)}
    weighting(losses).backward()
    # d/ds [exp(-s) L + s/2] at s = 0 is 1/2 - L
    assert float(weighting.log_vars["a"].grad) == pytest.approx(0.5 - 2.0)
    assert float(weighting.log_vars[JOINT].grad) == pytest.approx(0.5 - 0.5)
    unit = unit_of("uncertainty", "toy_baselines")
    trainer, extras = gmethods.get("uncertainty").train(unit, toy)
    path = extras["learned_weights"]
    assert [p["epoch"] for p in path] == list(range(unit.train.epochs + 1))
    assert path[0] == {"epoch": 0, "left": pytest.approx(1 / 3), "right": pytest.approx(1 / 3),
                       JOINT: pytest.approx(1 / 3)}  # fmt: skip
    first, last = ({k: v for k, v in p.items() if k != "epoch"} for p in (path[0], path[-1]))
    assert last != first  # the optimizer moved them
    # the trainer ends with the best val epoch's weights, the learned ones included
    learned = trainer.model_.loss_weighting.weights()
    best = path[trainer.best_epoch_]
    assert learned == pytest.approx({k: v for k, v in best.items() if k != "epoch"})


def test_learned_weights_stay_defined_where_the_log_variances_run_away():
    from gblend.models import UncertaintyWeights

    weighting = UncertaintyWeights(("a", "b", JOINT))
    with torch.no_grad():  # as seen at full scale: after a blow-up every exp(-s) underflows
        for name, value in (("a", 65769.5), ("b", 228.1), (JOINT, 75492.7)):
            weighting.log_vars[name].fill_(value)
    assert weighting.weights() == {"a": 0.0, "b": 1.0, JOINT: 0.0}
    with torch.no_grad():  # and before it, a head whose loss went to zero: exp(-s) overflows
        weighting.log_vars[JOINT].fill_(-200.0)
    assert weighting.weights()[JOINT] == 1.0


def vector_specs():
    return {m: gdata.ModalitySpec(m, "vector", (4,)) for m in ("a", "b")}


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("fusion", ["se_gate", "nl_gate"])
def test_each_fusion_changes_the_parameters_and_the_forward_pass_as_stated(fusion):
    cfg = ModelConfig(feature_dim=8, hidden=16, fusion_hidden=16)
    torch.manual_seed(0)
    late = FusionNet(vector_specs(), 3, cfg)
    torch.manual_seed(0)
    gated = FusionNet(vector_specs(), 3, replace(cfg, fusion=fusion))
    extra = {"se_gate": 2 * (8 * 8 + 8), "nl_gate": 3 * (8 * 8 + 8)}[fusion]
    assert count(gated) - count(late) == extra
    x = {"a": torch.randn(5, 4), "b": torch.randn(5, 4)}
    # the same encoders and fused head (same seed, the gate is built after the encoders)
    gated.fused_head.load_state_dict(late.fused_head.state_dict())
    assert torch.equal(gated.encoders["a"](x["a"]), late.encoders["a"](x["a"]))
    assert not torch.allclose(gated(x)[JOINT], late(x)[JOINT])


def test_mid_fusion_concatenates_before_the_encoders_last_layer_and_shares_it():
    cfg = ModelConfig(feature_dim=8, hidden=16, fusion_hidden=16)
    late = FusionNet(vector_specs(), 3, cfg)
    mid = FusionNet(vector_specs(), 3, replace(cfg, fusion="mid"))
    # each encoder loses its last layer (16 -> 8); one shared layer (2 x 16 -> 8) replaces
    # them; the fused head's first layer reads 8 features instead of 2 x 8
    assert count(late) - count(mid) == 2 * (16 * 8 + 8) - (32 * 8 + 8) + (2 * 8 - 8) * 16
    x = {"a": torch.randn(5, 4), "b": torch.randn(5, 4)}
    assert mid.encoders["a"](x["a"]).shape == (5, 16)  # the stream stops at the fusion point
    joint = mid.mid(torch.cat([mid.encoders[m](x[m]) for m in ("a", "b")], dim=1))
    assert torch.equal(mid(x)[JOINT], mid.fused_head(joint))
    heads = FusionNet(vector_specs(), 3, replace(cfg, fusion="mid", modality_heads=True))
    assert heads({"a": x["a"]})["a"].shape == (5, 3)  # a modality head reads its own stream


def test_mid_fusion_batches_like_late_fusion():
    from test_batched import SPECS, assert_losses_match_single_runs, run_data

    seeds = [0, 1]

    def mid(seed):
        torch.manual_seed(seed)
        return FusionNet(SPECS, 3, ModelConfig(hidden=16, feature_dim=8, fusion="mid"))

    assert_losses_match_single_runs(mid, [run_data(s, 150) for s in seeds], seeds)


def test_lmf_is_the_low_rank_tensor_product_of_the_features_each_with_a_one_appended():
    cfg = ModelConfig(feature_dim=8, hidden=16, fusion_hidden=16)
    late = FusionNet(vector_specs(), 3, cfg)
    lmf = FusionNet(vector_specs(), 3, replace(cfg, fusion="lmf"))
    rank = LMF_RANK
    # one (8+1) x 8 factor per rank and modality, rank weights and a bias; the fused head
    # reads 8 fused units instead of 2 x 8 concatenated ones
    extra = 2 * rank * 9 * 8 + rank + 8 - (2 * 8 - 8) * 16
    assert count(lmf) - count(late) == extra
    x = {"a": torch.randn(5, 4), "b": torch.randn(5, 4)}
    f = {m: lmf.encoders[m](x[m]) for m in ("a", "b")}
    # the full tensor product, formed: W[i, j, o] = sum_r lambda_r A_r[i, o] B_r[j, o]
    a, b = (torch.cat([f[m], torch.ones(5, 1)], dim=1) for m in ("a", "b"))
    fa, fb = lmf.lmf.factors["a"], lmf.lmf.factors["b"]
    weight = torch.einsum("r,rio,rjo->ijo", lmf.lmf.rank_weights[0], fa, fb)
    fused = torch.einsum("ni,nj,ijo->no", a, b, weight) + lmf.lmf.bias
    assert torch.allclose(lmf(x)[JOINT], lmf.fused_head(fused), atol=1e-5)
    # at initialisation the product is 1 + each modality's linear map + their interaction:
    # the fused units vary over samples at the features' scale, not k factors of it smaller
    # (which leaves the fused head at chance)
    x = {"a": torch.randn(64, 4), "b": torch.randn(64, 4)}
    f = {m: lmf.encoders[m](x[m]) for m in ("a", "b")}
    spread = torch.cat(list(f.values()), dim=1).std(dim=0).mean()
    assert lmf.lmf(f).std(dim=0).mean() > 0.5 * spread


def test_lmf_batches_like_late_fusion():
    from test_batched import SPECS, assert_losses_match_single_runs, run_data

    seeds = [0, 1]

    def lmf(seed):
        torch.manual_seed(seed)
        return FusionNet(SPECS, 3, ModelConfig(hidden=16, feature_dim=8, fusion="lmf"))

    assert_losses_match_single_runs(lmf, [run_data(s, 150) for s in seeds], seeds)


@pytest.mark.parametrize(
    ("method", "params", "where", "expected"),
    [
        ("dropout", {"rate": 0.2}, "model.dropout", 0.2),
        ("early_stop", {"patience": 3}, "train.patience", 3),
        ("mid_concat", {}, "model.fusion", "mid"),
        ("se_gate", {}, "model.fusion", "se_gate"),
        ("nl_gate", {}, "model.fusion", "nl_gate"),
        ("lmf", {}, "model.fusion", "lmf"),
    ],
)
def test_a_baseline_method_sets_its_option_in_the_unit_and_its_key(method, params, where, expected):
    axes = {f"{method}.{k}": [v] for k, v in params.items()}
    (unit,) = ex.Grid.resolve("smoke", "mfeat", methods=(method,), combos="study", axes=axes)
    group, _, name = where.partition(".")
    assert getattr(getattr(unit, group), name) == expected
    assert unit.config()[group][name] == expected
    (naive,) = ex.Grid.resolve("smoke", "mfeat", methods=("naive",), combos="study")
    assert getattr(getattr(naive, group), name) != expected


def test_an_early_stopped_run_is_read_at_the_weights_it_ends_with(toy):
    (unit,) = ex.Grid.resolve(
        "smoke", "toy_baselines", methods=("early_stop",), combos="study", epochs=30,
        axes={"early_stop.patience": [1]}, fixed={"train.lr": 0.5},
    )  # fmt: skip
    record = ex.run_unit(unit)
    assert record.epochs_run < 30  # it stopped
    assert record.last_metrics == {f"{k}_last": v for k, v in record.metrics.items()}
    # its history's last epoch is the one it stopped at, not the weights it ends with
    assert record.best_epoch < record.epochs_run


def test_the_se_gate_scales_each_modality_by_the_others():
    cfg = ModelConfig(feature_dim=8, hidden=16, fusion_hidden=16, fusion="se_gate")
    net = FusionNet(vector_specs(), 3, cfg)
    features = {"a": torch.randn(5, 8), "b": torch.randn(5, 8)}
    gated = net.gate(features)
    expected = features["a"] * torch.sigmoid(net.gate.gates["a"](features["b"]))
    assert torch.allclose(gated["a"], expected)


def test_a_zero_value_projection_makes_the_nl_gate_late_fusion():
    cfg = ModelConfig(feature_dim=8, hidden=16, fusion_hidden=16, fusion="nl_gate")
    net = FusionNet(vector_specs(), 3, cfg)
    torch.nn.init.zeros_(net.gate.value.weight)
    torch.nn.init.zeros_(net.gate.value.bias)
    features = {"a": torch.randn(5, 8), "b": torch.randn(5, 8)}
    out = net.gate(features)
    assert all(torch.equal(out[m], features[m]) for m in features)


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="mid_concat_typo")


def test_claim_15_compares_g_blend_on_each_network_with_that_networks_naive_training():
    from gblend.experiments import baselines

    # per seed: G-Blend 10 pts above naive mid fusion, 10 below naive LMF (seed noise apart)
    runs, weights = [], []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        for method, variant, acc in (
            ("mid_concat", "", 0.6),
            ("offline", "", 0.7),
            ("lmf", "model.fusion=lmf", 0.5),
            ("offline", "model.fusion=lmf", 0.4),
        ):
            row = {"dataset": "d", "combo": "a+b", "method": method, "variant": variant}
            runs.append({**row, "seed": seed, "n_modalities": 2, "test_acc_last": acc + noise})
            weights += [
                {**row, "seed": seed, "super_epoch": 0, "head": h, "weight": 1 / 3, "fallbacks": ""}
                for h in ("a", "b", JOINT)
            ]
    runs, weights = pd.DataFrame(runs), pd.DataFrame(weights)
    mid = baselines.fusion_claims(runs, weights, "mid_concat").iloc[0]
    lmf = baselines.fusion_claims(runs, weights, "lmf").iloc[0]
    assert (mid.claim, mid.variant, lmf.variant) == (15, "", "lmf")  # two glue names
    assert mid.verdict == "reproduced" and "+10.0 pts" in mid.evidence
    assert lmf.verdict == "contradicted" and "-10.0 pts" in lmf.evidence
    assert "LMF" in lmf.statement and "mid fusion" in mid.statement


def test_fine_tuning_start_reads_the_first_epoch_after_loading_the_encoders():
    from gblend.experiments import baselines

    rows = []
    for method, fit_at_1 in (("pretrain", 0.9), ("naive", 0.2)):
        for seed in (0, 1, 2):
            for epoch, (fit, val) in enumerate(((0.1, 0.1), (fit_at_1, 0.5), (1.0, 0.6))):
                for split, acc in (("train_subset", fit), ("val", val)):
                    rows.append(
                        {"dataset": "toy", "combo": "a+b", "method": method, "seed": seed,
                         "epoch": epoch, "head": JOINT, "split": split, "acc": acc}
                    )  # fmt: skip
                    rows.append({**rows[-1], "combo": "a", "acc": 0.0})  # not the full combo
    start = baselines.fine_tuning_start(pd.DataFrame(rows)).set_index("method")
    pre = start.loc[baselines.label_of("pretrain")]
    assert pre["T′ after epoch 1"] == pytest.approx(90.0)  # epoch 0 precedes every step
    assert pre["val at the last epoch"] == pytest.approx(60.0) and pre.seeds == 3
    line = baselines.fine_tuning_findings(start.reset_index())["toy"]
    assert "fits 90% of T′ (naive from scratch: 20%)" in line
