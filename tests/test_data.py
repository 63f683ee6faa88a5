"""Datasets: real MNIST through torchvision with md5 checks, the synthetic CIFAR-10 stand-in, batching."""

import subprocess
import sys

import pytest
import torch

from robrepro import data as D

# md5 of the extracted MNIST test images, as published with the dataset.
MNIST_T10K_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"


def test_torchvision_imports_through_the_package_in_a_fresh_interpreter():
    code = "import robrepro; tv = robrepro.import_torchvision(); import torchvision.datasets as d; print(d.MNIST.__name__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "MNIST"


def test_real_mnist_linked_from_mirror_md5_checked(tmp_path, data_root):
    man = D.prepare("mnist", "real", tmp_path / "root", [str(tmp_path / "absent"), str(data_root)], download=False)
    assert man["source"] == "real" and man["obtained"].startswith("linked from mirror")
    assert man["md5"]["t10k-images-idx3-ubyte"] == MNIST_T10K_IMAGES_MD5
    assert man["md5"]["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"  # torchvision's published md5
    x, y = D.load_split("mnist", "test", source="real", root=tmp_path / "root")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (10000,) and y.bincount().tolist()[0] == 980  # published count of zeros
    x5, _ = D.load_split("mnist", "train", source="real", root=tmp_path / "root", limit=5)
    assert x5.shape == (5, 1, 28, 28)


def _copy_mnist(src, dst):
    import shutil

    (dst / "MNIST").mkdir(parents=True)
    shutil.copytree(src / "MNIST" / "raw", dst / "MNIST" / "raw")


@pytest.mark.parametrize("victim", ["t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"])
def test_a_corrupt_mirror_is_refused_and_nothing_is_linked(tmp_path, data_root, victim):
    mirror = tmp_path / "mirror"
    _copy_mnist(data_root, mirror)
    f = mirror / "MNIST" / "raw" / victim
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    f.write_bytes(bytes(raw))
    with pytest.raises(D.DataIntegrityError) as err:
        D.prepare("mnist", "real", tmp_path / "root", [str(mirror)], download=False)
    msg = str(err.value)
    assert victim in msg and D.md5(f) in msg and "published" in msg
    assert not (tmp_path / "root" / "MNIST").exists()


def test_a_corrupt_file_under_the_root_is_refused(tmp_path, data_root):
    _copy_mnist(data_root, tmp_path / "root")
    f = tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    with open(f, "r+b") as fh:
        fh.seek(5000)
        b = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(D.DataIntegrityError, match="t10k-images-idx3-ubyte"):
        D.prepare("mnist", "real", tmp_path / "root", [], download=False)


def test_dataset_registry_knows_kinds_and_domains():
    assert D.info("mnist").domain == (0.0, 1.0) and D.info("iris").domain == (None, None)
    assert D.info("tiny_imagenet").geometry == {"in_channels": 3, "image_size": 64, "num_classes": 200}
    x, y = D.load_split("iris", "train", source="real", root="unused")
    xt, yt = D.load_split("iris", "test", source="real", root="unused")
    assert x.shape == (105, 4) and xt.shape == (45, 4) and x.dtype == torch.float32
    assert torch.allclose(x.mean(0), torch.zeros(4), atol=1e-5)  # standardised on the training split
    assert y.bincount().tolist() == [35, 35, 35] and yt.bincount().tolist() == [15, 15, 15]  # stratified
    for name in ("fashion_mnist", "tiny_imagenet"):
        xs, ys = D.load_split(name, "test", source="synthetic", root="unused", limit=20)
        assert xs.shape == (20, *D.info(name).shape) and xs.dtype == torch.uint8 and int(ys.max()) < D.info(name).num_classes
    with pytest.raises(ValueError, match="no synthetic"):
        D.prepare("iris", "synthetic", "unused")


def test_missing_dataset_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="mnist not found"):
        D.prepare("mnist", "real", tmp_path / "root", [str(tmp_path / "nothing")], download=False)


def test_synthetic_cifar_is_deterministic_and_shaped_like_cifar():
    x, y = D.synthetic_cifar10(300, "train", seed=0)
    x2, y2 = D.synthetic_cifar10(300, "train", seed=0)
    xt, _ = D.synthetic_cifar10(300, "test", seed=0)
    assert x.shape == (300, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, xt)
    assert set(y.tolist()) == set(range(10))
    assert D.prepare("cifar10", "synthetic", "unused")["source"] == "synthetic"
    assert D.prepare("mnist", "synthetic", "unused")["source"] == "synthetic"


def test_synthetic_cifar_is_learnable_but_not_trivial():
    # Nearest class mean on raw pixels: well above chance (10%), below perfect.
    x, y = D.synthetic_cifar10(2000, "train")
    xt, yt = D.synthetic_cifar10(500, "test")
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)])
    pred = torch.cdist(xt.float().flatten(1), means.flatten(1)).argmin(1)
    acc = (pred == yt).float().mean().item()
    assert 0.5 < acc < 0.9


def test_epoch_order_and_batches():
    o1, o1b, o2 = D.epoch_order(100, 0, 1), D.epoch_order(100, 0, 1), D.epoch_order(100, 0, 2)
    assert torch.equal(o1, o1b) and not torch.equal(o1, o2)
    assert sorted(o1.tolist()) == list(range(100))
    x = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1)
    y = torch.arange(10)
    all_b = list(D.batches(x, y, 4))
    assert [b[1].tolist() for b in all_b] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all_b[0][0].max() <= 1.0
    assert [b[1].tolist() for b in D.batches(x, y, 4, start=1)] == [[4, 5, 6, 7], [8, 9]]


def test_augment_is_a_function_of_the_generator():
    x = torch.rand(8, 3, 32, 32)
    a = D.augment(x, torch.Generator().manual_seed(5), 4, True)
    b = D.augment(x, torch.Generator().manual_seed(5), 4, True)
    c = D.augment(x, torch.Generator().manual_seed(6), 4, True)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
