"""The CIFAR ResNet-18 of the backbone zoo: layout, parameter count, input normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dunno import nets
from dunno.nets.resnet import BasicBlock

pytestmark = pytest.mark.one_thread


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nets.create("resnet18-cifar", 3, 10).eval()


def test_parameter_count_is_the_cifar_resnet18s(model):
    # kuangliu/pytorch-cifar ResNet18(): 11 173 962 parameters for 10 classes
    assert nets.count_parameters(model) == 11_173_962
    # by hand: stem 3*64*9 + BN 128; per stage the two blocks' convolutions and batch norms,
    # the 1x1 projections of stages 2-4; the head 512*10 + 10
    stem = 3 * 64 * 9 + 2 * 64
    blocks = 0
    for cin, cout in [(64, 64), (64, 128), (128, 256), (256, 512)]:
        first = cin * cout * 9 + cout * cout * 9 + 4 * cout
        projection = cin * cout + 2 * cout if cin != cout else 0
        second = 2 * cout * cout * 9 + 4 * cout
        blocks += first + projection + second
    assert stem + blocks + 512 * 10 + 10 == 11_173_962
    assert nets.count_parameters(nets.create("resnet18-cifar", 3, 100)) == 11_173_962 + 513 * 90


def test_layout_stem_stages_pool_and_head(model):
    stem_conv = model.stem[0]
    assert (stem_conv.kernel_size, stem_conv.stride, stem_conv.out_channels) == ((3, 3), (1, 1),
                                                                                 64)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    stages = list(model.stages)
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert all(isinstance(b, BasicBlock) for s in stages for b in s)
    assert [s[0].conv1.out_channels for s in stages] == [64, 128, 256, 512]
    assert [s[0].conv1.stride for s in stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    seen = {}
    for i, stage in enumerate(stages):
        stage.register_forward_hook(lambda m, a, out, i=i: seen.update({i: tuple(out.shape)}))
    x = torch.rand(2, 3, 32, 32)  # (N, C, H, W)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert seen == {0: (2, 64, 32, 32), 1: (2, 128, 16, 16), 2: (2, 256, 8, 8),
                    3: (2, 512, 4, 4)}
    assert feats.shape == (2, 512) and model.num_features == 512 and logits.shape == (2, 10)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 512
    torch.testing.assert_close(model.head(feats), logits, rtol=0, atol=0)


def test_is_resnet_depth_18_with_per_channel_normalisation(model):
    plain = nets.create("resnet", 3, 10, input_size=32, depth=18).eval()
    assert list(plain.state_dict()) == list(model.state_dict())  # the same weights fit both
    plain.load_state_dict(model.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    normalised = nets.create("resnet18-cifar", 3, 10, mean=mean, std=std).eval()
    normalised.load_state_dict(model.state_dict())  # mean / std are not in the state dict
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normalised(x), plain(by_hand), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(normalised.features(x), plain.features(by_hand), rtol=1e-5,
                                   atol=1e-5)
    config = normalised.config
    assert config["mean"] == mean and config["std"] == std and "depth" not in config
    rebuilt = nets.create(**config)
    rebuilt.load_state_dict(normalised.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), normalised(x), rtol=0, atol=0)


def test_one_training_step_on_a_tiny_batch():
    torch.manual_seed(0)
    model = nets.create("resnet18-cifar", 3, 10, mean=[0.5] * 3, std=[0.25] * 3).train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    with torch.no_grad():  # a small gradient step lowers the loss on the batch it was taken on
        assert F.cross_entropy(model(x), y).item() < loss.item()


def test_bad_normalisation_options():
    with pytest.raises(ValueError, match="'mean' and 'std' parameters of ResNet18CIFAR go "
                                         "together"):
        nets.create("resnet18-cifar", 3, 10, mean=[0.5] * 3)
    with pytest.raises(ValueError, match=r"'mean' parameter of ResNet18CIFAR must be a list of "
                                         r"3 numbers"):
        nets.create("resnet18-cifar", 3, 10, mean=[0.5], std=[0.2] * 3)
    with pytest.raises(ValueError, match="'std' parameter of ResNet18CIFAR must be a float in"):
        nets.create("resnet18-cifar", 3, 10, mean=[0.5] * 3, std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="Unknown option 'depth'"):
        nets.create("resnet18-cifar", 3, 10, depth=34)
