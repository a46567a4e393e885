"""Every registered model: a real forward and backward pass, finite outputs, gradients everywhere."""
from __future__ import annotations

import pytest
import torch

from fer_core.models import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(4, 1, 48, 48)
    out = model(x)
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert missing == []


def test_head_settings_shape_the_head():
    m = create_model("resnet18", head_width=128, dropout=0.3)
    linears = [l for l in m.head if isinstance(l, torch.nn.Linear)]
    assert [l.out_features for l in linears] == [128, 7]
    drops = [l.p for l in m.head if isinstance(l, torch.nn.Dropout)]
    assert drops == [0.3, 0.15]
    assert [type(l).__name__ for l in create_model("cnn_small", head_width=0).head] == ["Dropout", "Linear"]


def test_resnet18_is_the_seed_adaptation():
    m = create_model("resnet18")
    conv1 = m.backbone.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(m.backbone.maxpool, torch.nn.Identity)


def test_pretrained_file_missing_or_invalid_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="do not exist"):
        create_model("resnet18", pretrained=str(tmp_path / "nope.pth"))
    bad = tmp_path / "lfs.pth"
    bad.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match="could not be read"):
        create_model("resnet18", pretrained=str(bad))


def test_pretrained_imagenet_weights_average_to_one_channel(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    ref = resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(ref.state_dict(), path)
    m = create_model("resnet18", pretrained=str(path))
    assert torch.equal(m.backbone.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    expected = ref.conv1.weight.mean(1, keepdim=True)[:, :, 2:5, 2:5]
    assert torch.allclose(m.backbone.conv1.weight, expected)


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="known: cnn_small, resnet18, vit"):
        create_model("vgg")


def test_the_registry_loads_without_torchvision():
    """torchvision.models pulls in torch._dynamo (seconds a process): a process that builds cnn_small (a video
    worker, a Serve replica, a trial) must not pay for it; resnet18 imports it when built."""
    import subprocess
    import sys

    code = ("import sys; from fer_core.models import create_model, list_models; list_models(); "
            "create_model('cnn_small'); print('torchvision' in sys.modules, end=' '); "
            "create_model('resnet18'); print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
