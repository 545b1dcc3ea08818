"""Contract tests for the backbone zoo :mod:`dunno.nets`, run over every registered backbone."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dunno import nets
from dunno.nets.spectral import ConvSpectralNorm, SoftSpectralNorm, SpectralBatchNorm2d

NAMES = nets.available()
CONV_NAMES = ["densenet", "googlenet", "lenet5", "resnet", "vgg"]
SEQUENCE_NAMES = ["gru", "lstm", "transformer"]
IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]

# Small, non-default options per backbone: exercise the options and keep the tests fast.
SMALL_OPTIONS = {
    "lenet5": {"input_size": 8},
    "vgg": {"input_size": 8, "widths": (8, 16), "convs_per_stage": 1, "hidden": 32},
    "googlenet": {"input_size": 8, "width": 0.125, "batch_norm": True},
    "resnet": {
        "input_size": 8,
        "depth": 8,
        "width": 8,
        "spectral_norm": True,
        "sn_coeff": 2.0,
        "sn_mode": "operator",
        "spectral_bn": True,
        "leaky_relu": True,
    },
    "resnet18-cifar": {"input_size": 8, "mean": [0.5], "std": [0.25]},
    "densenet": {"input_size": 8, "depth": 10, "growth_rate": 6, "compression": 0.5},
    "vit": {"input_size": (9, 12), "patch_size": 4, "dim": 32, "depth": 1, "heads": 2},
    "lstm": {"input_size": 8, "hidden_size": 16, "num_layers": 2, "bidirectional": True},
    "gru": {"input_size": 8, "hidden_size": 16},
    "transformer": {
        "input_size": 8,
        "d_model": 32,
        "depth": 1,
        "heads": 2,
        "pooling": "cls",
        "norm_first": True,
    },
}


def _small(name: str, **overrides) -> nets.Backbone:
    options = {**SMALL_OPTIONS[name], **overrides}
    return nets.create(name, 1, 10, **options)


def _input_for(model: nets.Backbone, n: int = 3) -> torch.Tensor:
    h, w = model.input_size
    return torch.randn(n, model.in_channels, h, w)  # (N, C, H, W)


@pytest.fixture(scope="module")
def digits():
    """64 sklearn digits, ``(64, 1, 8, 8)`` in [0, 1] and labels ``(64,)``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images[:64] / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.tensor(data.target[:64], dtype=torch.long)  # (N,)
    return x, y


def test_registry_lists_every_backbone():
    assert NAMES == sorted(
        ["densenet", "googlenet", "gru", "lenet5", "lstm", "resnet", "resnet18-cifar",
         "transformer", "vgg", "vit"]
    )
    assert set(SMALL_OPTIONS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shapes_and_head_of_features(name, shape):
    c, h, w = shape
    model = nets.create(name, c, 7, input_size=(h, w)).eval()
    x = torch.randn(2, c, h, w)  # (N, C, H, W)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        again = model.head(feats)
    assert logits.shape == (2, 7)
    assert feats.shape == (2, model.num_features)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == model.num_features
    torch.testing.assert_close(again, logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", CONV_NAMES)
def test_conv_nets_accept_any_input_size(name):
    model = nets.create(name, 1, 4).eval()  # built for the default 28x28
    for h, w in [(8, 8), (13, 17), (32, 32)]:
        with torch.no_grad():
            assert model(torch.randn(2, 1, h, w)).shape == (2, 4)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    model = _small(name, dropout=0.25)
    x = _input_for(model)
    model.train()
    with torch.no_grad():
        model(x)  # move batch-norm statistics and power-iteration vectors off their init
    model.eval()
    config = json.loads(json.dumps(model.config))
    assert config["name"] == name and config["in_channels"] == 1 and config["num_classes"] == 10
    assert set(config) == {"name", "in_channels", "num_classes"} | set(nets.default_options(name))
    rebuilt = nets.create(**config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    assert rebuilt.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_training_steps_reduce_the_loss(name, digits):
    x, y = digits
    model = nets.create(name, 1, 10, input_size=8, dropout=0.0)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        initial = F.cross_entropy(model(x), y).item()
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < initial - 0.02


@pytest.mark.parametrize("name", NAMES)
def test_dropout_option(name):
    model = _small(name, dropout=0.5)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    x = _input_for(model)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))

    # Spectral norm's power iteration moves the weights slightly at every training forward.
    no_sn = {"spectral_norm": False} if name == "resnet" else {}
    deterministic = _small(name, dropout=0.0, **no_sn).train()
    assert all(m.p == 0.0 for m in deterministic.modules() if isinstance(m, nn.Dropout))
    with torch.no_grad():
        assert torch.equal(deterministic(x), deterministic(x))


def test_paper_dropout_defaults():
    defaults = {name: nets.default_options(name)["dropout"] for name in NAMES}
    assert defaults["vgg"] == 0.5 and defaults["googlenet"] == 0.4
    assert defaults["vit"] == 0.1 and defaults["transformer"] == 0.1
    assert defaults["lenet5"] == defaults["resnet"] == defaults["densenet"] == 0.0
    assert defaults["resnet18-cifar"] == 0.0


def _normalised_convs(model):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [m for m in convs if hasattr(m, "parametrizations")]


def test_spectral_norm_bounds_every_convolution():
    coeff = 1.0
    model = nets.create("resnet", 1, 10, input_size=8, depth=8, spectral_norm=True, sn_coeff=coeff)
    convs = _normalised_convs(model)
    assert len(convs) == len([m for m in model.modules() if isinstance(m, nn.Conv2d)]) == 9
    x = torch.randn(4, 1, 8, 8)  # (N, C, H, W)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # move the weights away from where the power iteration started
        loss = model(x).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        for _ in range(200):  # one power-iteration step per training forward
            model(x[:1])
    model.eval()
    active = 0
    for conv in convs:
        raw = conv.parametrizations.weight.original.detach().flatten(1)  # (out, in * k * k)
        effective = conv.weight.detach().flatten(1)  # (out, in * k * k)
        sigma = torch.linalg.matrix_norm(effective, ord=2).item()
        assert sigma <= coeff * 1.01
        if torch.linalg.matrix_norm(raw, ord=2).item() > coeff * 1.05:
            active += 1
            assert sigma == pytest.approx(coeff, rel=0.01)
        else:
            torch.testing.assert_close(effective, raw)
    assert active >= 5  # the bound is really enforced, not trivially satisfied


def test_spectral_norm_is_a_no_op_below_the_coefficient_and_frozen_in_eval():
    conv = nn.Conv2d(3, 8, 3)
    nets.soft_spectral_norm(conv, coeff=100.0)
    torch.testing.assert_close(conv.weight, conv.parametrizations.weight.original)
    state = conv.parametrizations.weight[0]
    assert isinstance(state, SoftSpectralNorm)
    u = state.u.clone()
    conv.eval()
    conv(torch.randn(1, 3, 5, 5))
    assert torch.equal(state.u, u)
    conv.train()
    conv.weight.sum()  # a training-mode access runs one power-iteration step
    assert not torch.equal(state.u, u)
    with pytest.raises(ValueError, match="coeff"):
        nets.soft_spectral_norm(nn.Linear(2, 2), coeff=0.0)


def _operator_norm(conv: nn.Conv2d, input_hw: tuple[int, int]) -> float:
    """The largest singular value of the convolution's explicit matrix at ``input_hw``."""
    h, w = input_hw
    basis = torch.eye(conv.in_channels * h * w, dtype=torch.float64)
    basis = basis.view(-1, conv.in_channels, h, w)  # (C*H*W, C, H, W): every unit input
    with torch.no_grad():
        columns = F.conv2d(basis, conv.weight.double(), None, conv.stride, conv.padding,
                           conv.dilation, conv.groups)  # (C*H*W, C', H', W')
    return torch.linalg.matrix_norm(columns.flatten(1), ord=2).item()


@pytest.mark.parametrize("cin,cout,kernel,stride,dilation,groups,hw", [
    (3, 5, 3, 1, 1, 1, (6, 6)),
    (4, 6, 3, 2, 1, 1, (7, 9)),   # odd sizes: the transpose needs output padding
    (4, 6, 1, 2, 1, 1, (8, 8)),   # a 1x1 shortcut projection
    (4, 4, 3, 1, 2, 2, (7, 7)),   # dilation and groups
])
def test_conv_spectral_norm_estimates_the_operator_norm(cin, cout, kernel, stride, dilation,
                                                         groups, hw):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2),
                     dilation=dilation, groups=groups, bias=False)
    nets.conv_spectral_norm(conv, coeff=1e6, input_size=hw)
    state = conv.parametrizations.weight[0]
    assert isinstance(state, ConvSpectralNorm) and state.input_size == hw
    raw = conv.parametrizations.weight.original
    for _ in range(200):  # one power-iteration step per training-mode access
        conv.weight  # noqa: B018
    exact = _operator_norm(conv, hw)
    # power iteration approaches the norm from below; the top of a convolution's spectrum is
    # dense (it samples the kernel's Fourier symbol), so the last digits converge slowly
    estimate = state.sigma(raw.detach()).item()
    assert exact * (1 - 2e-3) <= estimate <= exact * (1 + 1e-5)
    if kernel == 3:  # the reshaped-kernel norm is a different (here smaller) quantity
        assert torch.linalg.matrix_norm(raw.detach().flatten(1), ord=2).item() < 0.95 * exact
    # a bound below the norm rescales the convolution onto it
    nets.conv_spectral_norm(conv, coeff=0.5 * exact, input_size=hw)
    for _ in range(50):
        conv.weight  # noqa: B018
    conv.eval()
    assert _operator_norm(conv, hw) == pytest.approx(0.5 * exact, rel=3e-3)


def test_conv_spectral_norm_gradient_and_bad_input():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    nets.conv_spectral_norm(conv, coeff=0.1, input_size=5)
    state = conv.parametrizations.weight[0].eval()  # frozen u, v: a smooth function of W
    weight = conv.parametrizations.weight.original.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(state, (weight,))
    with pytest.raises(ValueError, match="'coeff' parameter of ConvSpectralNorm"):
        nets.conv_spectral_norm(nn.Conv2d(1, 1, 3), coeff=0.0, input_size=5)
    with pytest.raises(ValueError, match="'module' parameter of conv_spectral_norm"):
        nets.conv_spectral_norm(nn.Linear(2, 2), coeff=1.0, input_size=5)
    with pytest.raises(ValueError, match="zero padding"):
        nets.conv_spectral_norm(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"), 1.0, 5)
    with pytest.raises(ValueError, match="too small"):
        nets.conv_spectral_norm(nn.Conv2d(1, 1, 5), coeff=1.0, input_size=3)


def test_resnet_operator_norm_mode_bounds_every_convolution_at_its_input_size():
    coeff = 1.0
    torch.manual_seed(0)
    model = nets.create("resnet", 1, 10, input_size=(8, 6), depth=8, spectral_norm=True,
                        sn_coeff=coeff, sn_mode="operator")
    convs = _normalised_convs(model)
    assert len(convs) == 9
    states = [c.parametrizations.weight[0] for c in convs]
    assert all(isinstance(s, ConvSpectralNorm) for s in states)
    # stem and stage 0 see 8x6; stage 1 downsamples from 8x6, stage 2 from 4x3 to 2x2
    assert sorted({s.input_size for s in states}) == [(2, 2), (4, 3), (8, 6)]
    x = torch.randn(4, 1, 8, 6)  # (N, C, H, W)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model(x).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        for _ in range(200):
            model(x[:1])
    model.eval()
    norms = [_operator_norm(c, s.input_size) for c, s in zip(convs, states, strict=True)]
    assert max(norms) <= coeff * 1.01
    assert sum(n > 0.99 * coeff for n in norms) >= 5  # the bound is active, not vacuous
    with pytest.raises(ValueError, match="'sn_mode' parameter of ResNet"):
        nets.create("resnet", 1, 10, spectral_norm=True, sn_mode="both")


def test_spectral_batch_norm_equals_batch_norm_below_the_bound():
    torch.manual_seed(0)
    bounded, plain = SpectralBatchNorm2d(5, coeff=1e6), nn.BatchNorm2d(5)
    plain.load_state_dict(bounded.state_dict())  # same parameters, buffers and keys
    x = torch.randn(16, 5, 4, 4) * 3 + 1  # (N, C, H, W)
    for _ in range(3):  # training mode: batch statistics, running averages updated alike
        torch.testing.assert_close(bounded(x), plain(x))
    torch.testing.assert_close(bounded.running_var, plain.running_var)
    assert int(bounded.num_batches_tracked) == int(plain.num_batches_tracked) == 3
    bounded.eval(), plain.eval()
    torch.testing.assert_close(bounded(x), plain(x))


def test_spectral_batch_norm_bounds_the_eval_lipschitz_constant():
    torch.manual_seed(0)
    bn = SpectralBatchNorm2d(6, coeff=2.0)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -8.0, 1.0, 3.0, 0.1, 2.0]))
        bn.running_var.copy_(torch.tensor([1.0, 0.25, 4.0, 0.01, 1.0, 1.0]))
    # unbounded: max |gamma| / sqrt(var + eps) = 3 / 0.1 = 30 (to eps)
    assert bn.lipschitz().item() == pytest.approx(3.0 / (0.01 + 1e-5) ** 0.5)
    bn.eval()
    x1, x2 = torch.randn(32, 6, 3, 3), torch.randn(32, 6, 3, 3)
    with torch.no_grad():
        gain = (bn(x1) - bn(x2)).flatten(2).norm(dim=2) / (x1 - x2).flatten(2).norm(dim=2)
    assert gain.max().item() <= 2.0 + 1e-5
    assert gain[:, 3].max().item() == pytest.approx(2.0, rel=1e-5)  # the binding channel
    # the other channels keep their ratios: every scale shrinks by the same factor (30 / 2)
    scale = bn.bounded_weight() * torch.rsqrt(bn.running_var + bn.eps)
    raw = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(scale, raw / (raw.abs().max() / 2.0))
    # gradients reach gamma through the bound (the soft normalisation is differentiable)
    bn.train()
    bn(x1).pow(2).sum().backward()
    assert bn.weight.grad is not None and torch.isfinite(bn.weight.grad).all()
    with pytest.raises(ValueError, match="'coeff' parameter of SpectralBatchNorm2d"):
        SpectralBatchNorm2d(3, coeff=0.0)


def test_resnet_spectral_bn_option():
    plain = nets.create("resnet", 1, 10, input_size=8, depth=8, spectral_norm=True)
    bounded = nets.create("resnet", 1, 10, input_size=8, depth=8, spectral_norm=True,
                          spectral_bn=True, sn_coeff=1.5)
    norms = [m for m in bounded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 9 and all(isinstance(m, SpectralBatchNorm2d) and m.coeff == 1.5
                                   for m in norms)
    assert not any(isinstance(m, SpectralBatchNorm2d) for m in plain.modules())
    assert set(plain.state_dict()) == set(bounded.state_dict())
    assert bounded.config["spectral_bn"] is True and plain.config["spectral_bn"] is False


def test_resnet_layouts_and_leaky_relu():
    for depth, blocks, features in [(8, 3, 64), (20, 9, 64), (18, 8, 512)]:
        model = nets.create("resnet", 3, 10, depth=depth)
        n_blocks = sum(isinstance(m, nets.resnet.BasicBlock) for m in model.modules())
        assert (n_blocks, model.num_features) == (blocks, features)
        assert not any(isinstance(m, nn.LeakyReLU) for m in model.modules())
    leaky = nets.create("resnet", 1, 10, depth=8, leaky_relu=True)
    assert any(isinstance(m, nn.LeakyReLU) for m in leaky.modules())
    assert not any(isinstance(m, nn.ReLU) for m in leaky.modules())


def test_lenet5_follows_the_classic_path():
    model = nets.create("lenet5", 1, 10)
    assert nets.count_parameters(model) == 61706  # 156 + 2416 + 48120 + 10164 + 850
    seen = {}
    model.conv2.register_forward_hook(lambda m, i, o: seen.update(conv2=tuple(o.shape[-2:])))
    model(torch.randn(1, 1, 28, 28))
    assert seen["conv2"] == (10, 10)  # 28 -> 28 -> 14 -> 10 -> 5
    cifar = nets.create("lenet5", 3, 10, input_size=32)
    cifar.conv2.register_forward_hook(lambda m, i, o: seen.update(conv2=tuple(o.shape[-2:])))
    cifar(torch.randn(1, 3, 32, 32))
    assert seen["conv2"] == (10, 10)  # 32 -> 28 -> 14 -> 10 -> 5


@pytest.mark.parametrize("name", SEQUENCE_NAMES)
def test_sequence_models_read_image_rows_and_sequences(name):
    # A sequence of 5 features per step is an image with C=5, W=1.
    model = nets.create(name, 5, 3, input_size=(7, 1), dropout=0.0).eval()
    seq = torch.randn(2, 7, 5)  # (N, T, D)
    image = seq.transpose(1, 2).unsqueeze(-1)  # (N, C=D, H=T, W=1)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(seq))
        assert model(torch.randn(2, 11, 5)).shape == (2, 3)  # any length
    with pytest.raises(ValueError, match="sequences of shape"):
        model(torch.randn(2, 7, 4))


def test_bidirectional_features_and_transformer_pooling():
    lstm = nets.create("lstm", 1, 10, input_size=8, hidden_size=16, bidirectional=True)
    assert lstm.num_features == 32
    assert lstm.features(torch.randn(2, 1, 8, 8)).shape == (2, 32)
    for pooling in ("mean", "cls"):
        model = nets.create("transformer", 1, 10, input_size=8, pooling=pooling)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_vit_patches_and_input_size():
    assert nets.create("vit", 1, 10, input_size=28).grid == (7, 7)
    assert nets.create("vit", 1, 10, input_size=8).grid == (4, 4)
    model = nets.create("vit", 1, 10, input_size=28)
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(1, 1, 32, 32))


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet50'") as info:
        nets.create("resnet50", 1, 10)
    assert all(name in str(info.value) for name in NAMES)


def test_unknown_option_names_the_option_and_the_accepted_ones():
    with pytest.raises(TypeError, match="'depht'.*Accepted options: input_size, depth"):
        nets.create("resnet", 1, 10, depht=20)
    with pytest.raises(ValueError, match="'spectral_norm'"):  # also a ValueError
        nets.create("vit", 1, 10, spectral_norm=True)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet", {"depth": 7}, "'depth' parameter of ResNet"),
        ("resnet", {"depth": True}, "'depth' parameter of ResNet must be an int"),
        ("resnet", {"spectral_bn": "yes"}, "'spectral_bn' parameter of ResNet must be a bool"),
        ("lenet5", {"dropout": 1.0}, r"'dropout' parameter of LeNet5 must be a float in \[0, 1\)"),
        ("vgg", {"input_size": 0}, "'input_size' parameter of VGG"),
        ("vgg", {"widths": []}, "'widths' parameter of VGG"),
        ("densenet", {"depth": 41}, "'depth' parameter of DenseNet must be 6n \\+ 4"),
        ("vit", {"dim": 30, "heads": 4}, "divisible by 'heads'"),
        ("transformer", {"pooling": "max"}, "'pooling' parameter of Transformer must be one of"),
        ("lstm", {"bidirectional": 1}, "'bidirectional' parameter of LSTM must be a bool"),
    ],
)
def test_invalid_option_values(name, options, message):
    with pytest.raises(ValueError, match=message):
        nets.create(name, 1, 10, **options)


def test_invalid_channels_and_inputs():
    with pytest.raises(ValueError, match="'in_channels' parameter"):
        nets.create("lenet5", 0, 10)
    with pytest.raises(ValueError, match="'num_classes' parameter"):
        nets.create("lenet5", 1, 0)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, H, W\)"):
        nets.create("resnet", 3, 10, depth=8)(torch.randn(2, 1, 8, 8))


def test_describe_and_count_parameters():
    for name in NAMES:
        info = nets.describe(name)
        assert info["name"] == name and "\n" not in info["summary"] and info["reference"]
        assert info["options"] == nets.default_options(name)
        assert {"input_size", "dropout"} <= set(info["options"])
        assert info["options"]["input_size"] == (32 if name == "resnet18-cifar" else 28)
    model = nets.create("lenet5", 1, 10)
    total = sum(p.numel() for p in model.parameters())
    assert nets.count_parameters(model) == total
    model.head.requires_grad_(False)
    assert nets.count_parameters(model) == total - 850
    assert nets.count_parameters(model, trainable_only=False) == total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    for name in NAMES:
        model = _small(name).eval()
        x = _input_for(model)
        with torch.no_grad():
            expected = model(x)
            got = model.to("cuda")(x.to("cuda")).cpu()
        torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)  # TF32 convolutions


def test_a_backbone_must_define_features():
    class NoFeatures(nets.base.Backbone):
        name = "nofeatures"

    with pytest.raises(TypeError, match="abstract.*features"):
        NoFeatures(1, 10, {})
