from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from gblend.models import JOINT, FusionNet, ModelConfig, make_encoder

SPECS = {
    "vec": SimpleNamespace(kind="vector", shape=(12,)),
    "img": SimpleNamespace(kind="image", shape=(1, 28, 28)),
    "seq": SimpleNamespace(kind="sequence", shape=(20, 6)),
}


def batch(n: int = 5) -> dict[str, torch.Tensor]:
    return {m: torch.randn(n, *s.shape) for m, s in SPECS.items()}


@pytest.mark.parametrize("name", list(SPECS))
def test_each_encoder_maps_to_feature_dim(name):
    encoder = make_encoder(SPECS[name], ModelConfig(feature_dim=7))
    assert encoder(batch()[name]).shape == (5, 7)


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="vector"):
        make_encoder(SimpleNamespace(kind="graph", shape=(3,)), ModelConfig())


@pytest.mark.parametrize("modalities", [("vec",), ("img", "seq"), ("vec", "img", "seq")])
def test_late_fusion_returns_only_the_fused_head(modalities):
    model = FusionNet({m: SPECS[m] for m in modalities}, n_classes=4)
    out = model(batch())
    assert list(out) == [JOINT] and out[JOINT].shape == (5, 4)
    assert model.heads == (JOINT,)


def test_multi_head_model_has_one_linear_head_per_modality_plus_fused():
    model = FusionNet(SPECS, n_classes=3, config=ModelConfig(modality_heads=True))
    out = model(batch())
    assert set(out) == {"vec", "img", "seq", JOINT}
    assert all(logits.shape == (5, 3) for logits in out.values())
    assert isinstance(model.modality_heads["vec"], torch.nn.Linear)


def test_modality_head_depends_only_on_its_own_encoder():
    torch.manual_seed(0)
    model = FusionNet(SPECS, n_classes=3, config=ModelConfig(modality_heads=True)).eval()
    x = batch()
    changed = dict(x, img=torch.randn_like(x["img"]))
    a, b = model(x), model(changed)
    assert torch.equal(a["vec"], b["vec"]) and torch.equal(a["seq"], b["seq"])
    assert not torch.equal(a["img"], b["img"]) and not torch.equal(a[JOINT], b[JOINT])


def test_fused_head_is_two_fc_layers_then_prediction():
    model = FusionNet(SPECS, n_classes=3, config=ModelConfig(feature_dim=8, fusion_hidden=16))
    linears = [m for m in model.fused_head if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(24, 16), (16, 16), (16, 3)]


def test_joint_is_a_reserved_modality_name():
    with pytest.raises(ValueError, match="reserved"):
        FusionNet({JOINT: SPECS["vec"]}, n_classes=2)


def test_given_some_modalities_only_their_heads_are_computed():
    model = FusionNet(SPECS, n_classes=3, config=ModelConfig(modality_heads=True)).eval()
    x = batch()
    out = model({"img": x["img"]})
    assert set(out) == {"img"}
    assert torch.equal(out["img"], model(x)["img"])
    with pytest.raises(ValueError, match="no input"):
        model({})


def test_the_architecture_figure_states_each_models_parameter_count():
    import matplotlib

    matplotlib.use("Agg")
    from gblend import data as gdata
    from gblend import plots

    ds = gdata.load("synthetic", seed=0, n_samples=300)
    config = ModelConfig(feature_dim=32, fusion_hidden=48)
    fig = plots.architectures(ds.specs, ds.n_classes, config)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for heads in (False, True):
        model = FusionNet(ds.specs, ds.n_classes, replace(config, modality_heads=heads))
        total = sum(p.numel() for p in model.parameters())
        assert any(f"total {total:,} params" in t for t in texts)
    assert sum("w_" in t for t in texts) == len(ds.specs) + 1  # a weighted loss per head
    assert any("2 FC × 48" in t for t in texts)
