import pytest
import torch

from robrepro import models
from robrepro.models.odenet import ODEBlock, forward_nfe

MNIST = dict(in_channels=1, image_size=28, num_classes=10, mean=[0.1307], std=[0.3081])
CIFAR = dict(in_channels=3, image_size=32, num_classes=10, mean=[0.49, 0.48, 0.45], std=[0.2, 0.2, 0.2])

SMALL = {
    "cifar_resnet": dict(depth=8, width=4),
    "resnet56": dict(width=2),
    "bottleneck_resnet": dict(blocks=(1, 1, 1, 1), width=4),
    "resnet50": dict(width=2),
    "odenet": dict(channels=8, end_time=1.0, rtol=1e-2, atol=1e-2),
}


@pytest.mark.parametrize("geom", [MNIST, CIFAR], ids=["mnist", "cifar"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_maps_images_to_logits(name, geom):
    torch.manual_seed(0)
    m = models.build(name, **geom, **SMALL[name]).eval()
    x = torch.rand(3, geom["in_channels"], geom["image_size"], geom["image_size"])
    out = m(x)
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    assert isinstance(m[0], models.Normalize)


def test_resnet56_has_56_layers():
    m = models.build("resnet56", **CIFAR)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(convs) + len(linears) == 56


def test_resnet50_has_50_layers_and_mnist_stem():
    from robrepro.models.resnet import Bottleneck

    m = models.build("resnet50", **MNIST)
    weighted = sum(isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) for mod in m.modules())
    # Projection shortcuts are not counted in the "50" of ResNet-50.
    projections = sum(isinstance(mod, Bottleneck) and mod.proj is not None for mod in m.modules())
    assert weighted - projections == 50
    stem = next(mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))
    assert stem.in_channels == 1 and stem.kernel_size == (3, 3)


def test_zero_step_size_makes_a_stride1_stage_the_identity():
    torch.manual_seed(0)
    m = models.build("cifar_resnet", **CIFAR, depth=20, width=4, h=0.0).eval()
    net = m[1]
    stage = net.stages[0]
    x = torch.relu(torch.randn(2, 4, 32, 32))  # a block's input always follows a ReLU
    assert torch.equal(stage(x), x)
    # With h > 0 the same stage is not the identity: the test can fail.
    m2 = models.build("cifar_resnet", **CIFAR, depth=20, width=4, h=0.5).eval()
    assert not torch.allclose(m2[1].stages[0](x), x)


def test_step_size_scales_the_residual_branch():
    torch.manual_seed(0)
    a = models.build("cifar_resnet", **CIFAR, depth=8, width=4, h=1.0).eval()
    b = models.build("cifar_resnet", **CIFAR, depth=8, width=4, h=0.25)
    b.load_state_dict(a.state_dict())
    b.eval()
    blk_a, blk_b = a[1].stages[0][0], b[1].stages[0][0]
    x = torch.relu(torch.randn(1, 4, 8, 8))
    branch = blk_a.bn2(blk_a.conv2(torch.relu(blk_a.bn1(blk_a.conv1(x)))))
    assert torch.allclose(blk_b(x), torch.relu(x + 0.25 * branch), atol=1e-6)


def test_odenet_counts_function_evaluations():
    torch.manual_seed(0)
    m = models.build("odenet", **MNIST, channels=8, end_time=1.0, rtol=1e-3, atol=1e-3).eval()
    assert forward_nfe(m) == 0
    with torch.no_grad():
        m(torch.rand(2, 1, 28, 28))
    nfe_loose = forward_nfe(m)
    # dopri5 uses 6 evaluations per step plus the initial one(s): at least one full step.
    assert nfe_loose >= 7
    block = next(mod for mod in m.modules() if isinstance(mod, ODEBlock))
    block.rtol = block.atol = 1e-7
    with torch.no_grad():
        m(torch.rand(2, 1, 28, 28))
    assert forward_nfe(m) > nfe_loose  # tighter tolerance, more steps
    assert forward_nfe(models.build("cifar_resnet", **CIFAR, depth=8, width=2)) is None


def test_odenet_layer_counts_follow_table_a1():
    def convs(m):
        return sum(isinstance(mod, torch.nn.Conv2d) for mod in m.modules())

    assert convs(models.build("odenet", **MNIST, channels=8, downsample=1)) == 4
    assert convs(models.build("odenet", **CIFAR, channels=8, downsample=2)) == 5


def test_unknown_model_is_named():
    with pytest.raises(KeyError, match="resnet5000"):
        models.build("resnet5000", **MNIST)
