"""Datasets as in-memory tensors, prepared once per data root.

MNIST and CIFAR-10 come through torchvision (its md5 checks included), from ``root``; ``prepare``
fills ``root`` from a local mirror folder when one holds the files, else downloads them. CIFAR-10
can also be *synthetic*: class-conditional images with CIFAR-10's shapes, value range and
normalisation, generated from a seed, for machines that cannot get the real files. Every result
made from it says so (``source: synthetic``).

Small image datasets fit in memory as uint8 (CIFAR-10: 180 MB), so batches are sliced from tensors
with a seeded permutation per epoch: no DataLoader workers, and a resumed run can skip exactly the
batches it already did.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import import_torchvision


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_channels: int
    image_size: int
    num_classes: int
    n_train: int
    n_test: int


INFO = {
    "mnist": DatasetInfo("mnist", 1, 28, 10, 60000, 10000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 50000, 10000),
}


# Where torchvision keeps each dataset's files under its root.
_FOLDER = {"mnist": "MNIST", "cifar10": "cifar-10-batches-py"}


def _tv_class(name: str):
    tv = import_torchvision()
    return {"mnist": tv.datasets.MNIST, "cifar10": tv.datasets.CIFAR10}[name]


def _real_present(name: str, root: Path) -> bool:
    cls = _tv_class(name)
    try:
        cls(str(root), train=True, download=False)
        cls(str(root), train=False, download=False)
        return True
    except RuntimeError:
        return False


def _link_from_mirror(name: str, root: Path, mirror: Path) -> bool:
    """Symlink the dataset's files from ``mirror`` into ``root`` if the mirror holds a verified copy."""
    if not _real_present(name, mirror):
        return False
    sub = _FOLDER[name]
    target = root / sub
    if target.is_symlink() or target.exists():
        if target.is_symlink():
            target.unlink()
        else:
            return False
    root.mkdir(parents=True, exist_ok=True)
    target.symlink_to((mirror / sub).resolve(), target_is_directory=True)
    return _real_present(name, root)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(name: str, source: str, root: str | os.PathLike, mirrors: list[str] = (), download: bool = True) -> dict:
    """Make ``name`` available under ``root``; return a manifest (what, where from, md5 of every file)."""
    if name not in INFO:
        raise KeyError(f"unknown dataset {name!r}")
    if source == "synthetic":
        if name != "cifar10":
            raise ValueError("only cifar10 has a synthetic stand-in")
        return {"dataset": name, "source": "synthetic", "generator": "robrepro.data.synthetic_cifar10"}
    root = Path(root)
    how = "present"
    if not _real_present(name, root):
        how = None
        for m in mirrors:
            if Path(m).is_dir() and _link_from_mirror(name, root, Path(m)):
                how = f"linked from mirror {m}"
                break
        if how is None:
            if not download:
                raise RuntimeError(f"{name} not found under {root} or in mirrors {list(mirrors)}, and download is off")
            _tv_class(name)(str(root), train=True, download=True)
            _tv_class(name)(str(root), train=False, download=True)
            how = "downloaded"
    folder = root / _FOLDER[name] / ("raw" if name == "mnist" else "")
    files = {p.name: _md5(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.endswith(".gz")}
    return {"dataset": name, "source": "real", "root": str(root), "obtained": how, "md5": files}


def synthetic_cifar10(n: int, split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stand-in for CIFAR-10: uint8 (n, 3, 32, 32) images, labels 0..9.

    Each class has a smooth, low-contrast colour template (a random 4x4x3 pattern upsampled); an image is its
    class template, shifted by up to 3 pixels, with random contrast and brightness and pixel noise.
    Templates depend on ``seed`` only, so train and test share classes; the images of the two splits
    come from different streams. A small CNN learns it well above chance but not perfectly.
    """
    g = torch.Generator().manual_seed(seed)
    # Templates vary only +-0.15 around grey, so that classes overlap under the noise below: a
    # nearest-class-mean classifier gets about 70%, not 100%.
    smooth = torch.nn.functional.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=32, mode="bilinear", align_corners=False)
    templates = 0.5 + 0.3 * (smooth - 0.5)
    g = torch.Generator().manual_seed(seed * 1000 + {"train": 1, "test": 2}[split])
    y = torch.randint(0, 10, (n,), generator=g)
    x = templates[y]
    shifts = torch.randint(-3, 4, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)])
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    brightness = 0.3 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    x = (x - 0.5) * contrast + 0.5 + brightness + 0.25 * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def load_split(name: str, split: str, *, source: str, root: str | os.PathLike, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, C, H, W) and int64 labels; the first ``limit`` images of the split."""
    info = INFO[name]
    if source == "synthetic":
        n = info.n_train if split == "train" else info.n_test
        return synthetic_cifar10(min(n, limit) if limit else n, split, seed)
    ds = _tv_class(name)(str(root), train=(split == "train"), download=False)
    x = torch.as_tensor(ds.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    if limit:
        x, y = x[:limit], y[:limit]
    return x.contiguous(), y


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) alone, so resume can replay it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def augment(x: torch.Tensor, g: torch.Generator, crop_pad: int = 0, flip: bool = False) -> torch.Tensor:
    """Random crop (zero padding ``crop_pad``) and horizontal flip of a float batch, from generator ``g``."""
    if crop_pad:
        n, _, hgt, wid = x.shape
        padded = torch.nn.functional.pad(x, (crop_pad,) * 4)
        dx = torch.randint(0, 2 * crop_pad + 1, (n,), generator=g).tolist()
        dy = torch.randint(0, 2 * crop_pad + 1, (n,), generator=g).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + hgt, dx[i] : dx[i] + wid] for i in range(n)])
    if flip:
        mask = torch.rand(x.shape[0], generator=g) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, order: torch.Tensor | None = None, start: int = 0, device="cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float batches in [0, 1] on ``device``, in ``order`` (default: as stored), from batch ``start`` on."""
    n = x.shape[0]
    idx = torch.arange(n) if order is None else order
    for b in range(start, (n + batch_size - 1) // batch_size):
        sel = idx[b * batch_size : (b + 1) * batch_size]
        xb = x[sel].to(device, non_blocking=True)
        # uint8 images become floats in [0, 1]; float data (tabular features) pass as they are.
        yield (xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()), y[sel].to(device, non_blocking=True)
