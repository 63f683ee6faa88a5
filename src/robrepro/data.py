"""Datasets: a registry that knows each dataset's kind, geometry and input domain, md5-checked files,
labelled synthetic stand-ins, and batching from in-memory tensors.

* Images (MNIST, Fashion-MNIST, CIFAR-10, Tiny ImageNet) are stored as uint8 (N, C, H, W) and fed to
  models as floats in [0, 1]: their input box is [0, 1]. Tabular data (Iris, from scikit-learn's
  bundled copy) are float features, standardised with the training split's statistics: their box is
  unbounded. Attacks and bounds take the box from here (:attr:`DatasetInfo.domain`).
* Real files are checked against the published md5 checksums before anything uses them
  (torchvision's lists for MNIST, Fashion-MNIST and CIFAR-10, the archive's for Tiny ImageNet); a
  mismatch raises :class:`DataIntegrityError` naming the file and both checksums, and nothing is linked.
* Checked again at use, cheaply: preparing a dataset records the size, modification time and md5 of
  each file beside the data (``<root>/<name>.prepared.json``); loading a split compares sizes and
  times, md5-checks any file whose size or time changed, and stops naming a file that changed since.
  A dataset that was never prepared under the root stops with the root and the README's section.
* Where a dataset cannot be had (no internet), ``source: synthetic`` generates a stand-in with the
  dataset's shapes and value range from a seed. Every result made from it says so.

Small datasets fit in memory, so batches are sliced from tensors with a seeded permutation per
epoch: no DataLoader workers, and a resumed run can skip exactly the batches it already did.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import import_torchvision


class DataIntegrityError(RuntimeError):
    """A dataset file whose checksum differs from the published one, or from the one it had when prepared."""


# Where a user reads how datasets are made available (named in the errors of a missing dataset).
README_DATA = 'README.md, section "Data"'


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the workflow needs to know about a dataset.

    ``shape`` is one sample's shape: (C, H, W) for images, (features,) for tabular data.
    ``domain`` is the input box (lower, upper); None means unbounded on that side.
    ``folder`` is where the files live under a data root (torchvision's layout).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_classes: int
    n_train: int
    n_test: int
    domain: tuple[float | None, float | None]
    folder: str | None
    synthetic: bool

    @property
    def geometry(self) -> dict[str, int]:
        """Keyword arguments every model constructor takes (tabular features count as channels of a 1x1 image)."""
        if self.kind == "image":
            return {"in_channels": self.shape[0], "image_size": self.shape[1], "num_classes": self.num_classes}
        return {"in_channels": self.shape[0], "image_size": 1, "num_classes": self.num_classes}


INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "image", (1, 28, 28), 10, 60000, 10000, (0.0, 1.0), "MNIST", True),
    "fashion_mnist": DatasetInfo("fashion_mnist", "image", (1, 28, 28), 10, 60000, 10000, (0.0, 1.0), "FashionMNIST", True),
    "cifar10": DatasetInfo("cifar10", "image", (3, 32, 32), 10, 50000, 10000, (0.0, 1.0), "cifar-10-batches-py", True),
    "tiny_imagenet": DatasetInfo("tiny_imagenet", "image", (3, 64, 64), 200, 100000, 10000, (0.0, 1.0), "tiny-imagenet-200", True),
    "iris": DatasetInfo("iris", "tabular", (4,), 3, 105, 45, (None, None), None, False),
}

# Tiny ImageNet: the archive and its published checksum (the extracted files have none).
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
# Iris: fraction of the 150 samples held out for test (stratified), and the split's seed.
IRIS_TEST_FRACTION = 0.3


def info(name: str) -> DatasetInfo:
    if name not in INFO:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(INFO))}")
    return INFO[name]


def _tv_class(name: str):
    tv = import_torchvision()
    return {"mnist": tv.datasets.MNIST, "fashion_mnist": tv.datasets.FashionMNIST, "cifar10": tv.datasets.CIFAR10}[name]


def md5(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _gunzip_md5(path: Path) -> str:
    h = hashlib.md5()
    with gzip.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, expected: str, what: str, seen: dict[str, Path] | None = None) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({what})")
    got = md5(path)
    if got != expected:
        raise DataIntegrityError(f"{path}: md5 {got} differs from the published {expected} ({what}); the file is corrupt or not the original")
    if seen is not None:
        seen[path.name] = path
    return got


def verify(name: str, root: str | os.PathLike, paths: dict[str, Path] | None = None) -> dict[str, str]:
    """Check every file of real dataset ``name`` under ``root``; return file -> md5, or raise.

    MNIST and Fashion-MNIST: each published ``.gz`` archive, and each extracted file against the
    decompressed archive (torchvision itself only checks that the extracted files exist). CIFAR-10:
    every batch file and the metadata. Tiny ImageNet: the archive the folder was extracted from.
    ``paths``, if given, receives file -> path of every file checked.
    """
    ds = info(name)
    base = Path(root) / (ds.folder or "")
    out: dict[str, str] = {}
    if name in ("mnist", "fashion_mnist"):
        for gz_name, published in _tv_class(name).resources:
            gz = base / "raw" / gz_name
            out[gz_name] = _check(gz, published, f"{name} archive", paths)
            raw = gz.with_suffix("")
            out[raw.name] = _check(raw, _gunzip_md5(gz), f"{name} file extracted from {gz_name}", paths)
    elif name == "cifar10":
        cls = _tv_class(name)
        for fname, published in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]:
            out[fname] = _check(base / fname, published, "cifar10 batch", paths)
    elif name == "tiny_imagenet":
        zip_path = Path(root) / "tiny-imagenet-200.zip"
        out[zip_path.name] = _check(zip_path, TINY_ZIP_MD5, "Tiny ImageNet archive (kept beside the extracted folder so it can be checked)", paths)
        if not (base / "wnids.txt").is_file():
            raise FileNotFoundError(f"{base}: the extracted tiny-imagenet-200 folder is missing")
    else:
        raise ValueError(f"{name} has no files to verify")
    return out


def _present(name: str, root: Path) -> bool:
    ds = info(name)
    return ds.folder is not None and (root / ds.folder).exists()


def _download(name: str, root: Path) -> None:
    if name == "tiny_imagenet":
        tv = import_torchvision()
        tv.datasets.utils.download_and_extract_archive(TINY_URL, str(root), md5=TINY_ZIP_MD5, remove_finished=False)
        return
    for train in (True, False):
        _tv_class(name)(str(root), train=train, download=True)


def prepare(name: str, source: str, root: str | os.PathLike, mirrors: list[str] = (), download: bool = True) -> dict:
    """Make ``name`` available under ``root`` and return its manifest (source, origin, md5 of every file).

    Order: files already under ``root``; else a mirror folder in the same layout whose files pass
    the checksums, linked into ``root``; else a download. Every real file is md5-checked before
    the manifest is written; a corrupt copy stops here, before any job uses it.
    """
    ds = info(name)
    if source == "synthetic":
        if not ds.synthetic:
            raise ValueError(f"{name} has no synthetic stand-in")
        return {"dataset": name, "source": "synthetic", "generator": "robrepro.data.synthetic_images"}
    if name == "iris":
        return {"dataset": name, "source": "real", "obtained": "scikit-learn's bundled copy", "md5": {"iris.csv": md5(_iris_csv())}}
    root = Path(root)
    how = "present" if _present(name, root) else None
    if how is None:
        for m in mirrors:
            if _present(name, Path(m)):
                verify(name, m)  # a corrupt mirror raises here, before anything is linked
                _link(name, root, Path(m))
                how = f"linked from mirror {m}"
                break
    if how is None:
        if not download:
            raise RuntimeError(f"{name} not found under {root} or in mirrors {list(mirrors)}, and download is off")
        _download(name, root)
        how = "downloaded"
    paths: dict[str, Path] = {}
    sums = verify(name, root, paths)
    _record_prepared(name, root, {f: (paths[f], m) for f, m in sums.items()})
    return {"dataset": name, "source": "real", "root": str(root), "obtained": how, "md5": sums}


# --- checked at use ------------------------------------------------------------------------------


def prepared_record(name: str, root: str | os.PathLike) -> Path:
    """The file in which :func:`prepare` records each file's size, time and md5 for the check at use."""
    return Path(root) / f"{name}.prepared.json"


def _record_prepared(name: str, root: Path, files: dict[str, tuple[Path, str]]) -> None:
    from .results import write_json_atomic

    rows = {}
    for fname, (path, digest) in files.items():
        st = path.stat()  # through a mirror's link: the file itself
        rows[fname] = {"path": str(path.relative_to(root)), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": digest}
    write_json_atomic(prepared_record(name, root), {"dataset": name, "files": rows})


def check_prepared(name: str, root: str | os.PathLike) -> None:
    """Stop if a file of ``name`` changed since it was prepared under ``root`` (nothing to check if
    it never was). A file whose size and modification time are as recorded passes at the cost of a
    ``stat``; any other is md5-checked, so a touched but intact file passes too."""
    record = prepared_record(name, root)
    if not record.is_file():
        return
    for row in json.loads(record.read_text())["files"].values():
        path = Path(root) / row["path"]
        if not path.is_file():
            raise DataIntegrityError(f"{path}: missing, but present when {name} was prepared ({record}); restore it or prepare {name} again ({README_DATA})")
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"]):
            continue
        got = md5(path)
        if got != row["md5"]:
            raise DataIntegrityError(
                f"{path}: changed since {name} was prepared (md5 {got}, recorded {row['md5']} in {record}); "
                f"the file is corrupt: restore it, or delete it and {record.name} and prepare {name} again ({README_DATA})"
            )


def missing_dataset_error(name: str, root: str | os.PathLike) -> FileNotFoundError:
    ds = info(name)
    return FileNotFoundError(
        f"{name}: no data under the data root {Path(root).resolve()} (expected {ds.folder}/ there). Datasets are made "
        f"available by the workflow's prepare_data rule (python -m robrepro prepare-data --dataset {name} --root ROOT "
        f"[--mirror FOLDER] --out MANIFEST), from data.mirrors or a download: see {README_DATA}."
    )


def _link(name: str, root: Path, mirror: Path) -> None:
    ds = info(name)
    root.mkdir(parents=True, exist_ok=True)
    target = root / ds.folder
    if target.is_symlink():
        target.unlink()
    target.symlink_to((mirror / ds.folder).resolve(), target_is_directory=True)
    if name == "tiny_imagenet":
        z = root / "tiny-imagenet-200.zip"
        if z.is_symlink():
            z.unlink()
        z.symlink_to((mirror / z.name).resolve())


# --- synthetic stand-ins ---------------------------------------------------------------------------


def synthetic_images(shape: tuple[int, int, int], num_classes: int, n: int, split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stand-in for an image dataset: uint8 (n, C, H, W) images, labels 0..num_classes-1.

    Each class has a smooth, low-contrast colour template (a random 4x4 pattern upsampled); an image
    is its class template, shifted by up to 3 pixels, with random contrast and brightness and pixel
    noise. Templates depend on ``seed`` only, so train and test share classes; the images of the two
    splits come from different streams. Templates vary only +-0.15 around grey, so classes overlap
    under the noise: a small CNN learns it well above chance but not perfectly.
    """
    c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(num_classes, c, 4, 4, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    templates = 0.5 + 0.3 * (smooth - 0.5)
    g = torch.Generator().manual_seed(seed * 1000 + {"train": 1, "test": 2}[split])
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = templates[y]
    shifts = torch.randint(-3, 4, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)]) if n else x
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    brightness = 0.3 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    x = (x - 0.5) * contrast + 0.5 + brightness + 0.25 * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def synthetic_cifar10(n: int, split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_images((3, 32, 32), 10, n, split, seed)


# --- loading ---------------------------------------------------------------------------------------


def _iris_csv() -> Path:
    from importlib import resources

    return Path(str(resources.files("sklearn.datasets").joinpath("data/iris.csv")))


def _load_iris(split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Iris, stratified train/test split from ``seed``; features standardised with the training statistics."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=IRIS_TEST_FRACTION, stratify=y, random_state=seed)
    mu, sd = xtr.mean(0), xtr.std(0)
    xs, ys = (xtr, ytr) if split == "train" else (xte, yte)
    return torch.tensor((xs - mu) / sd, dtype=torch.float32), torch.tensor(ys, dtype=torch.long)


def _load_tiny(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny ImageNet from its standard folder (train/<wnid>/images, val/images + val_annotations.txt);
    its labelled validation set serves as test set. Decoded once, then cached beside the folder."""
    from PIL import Image

    from .results import atomic_path

    base = root / "tiny-imagenet-200"
    cache = root / f"tiny-imagenet-200.{split}.pt"
    if cache.exists():
        d = torch.load(cache, weights_only=True)
        return d["x"], d["y"]
    wnids = (base / "wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        items = [(p, index[w]) for w in wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
    else:
        rows = [line.split("\t") for line in (base / "val" / "val_annotations.txt").read_text().splitlines() if line.strip()]
        items = [(base / "val" / "images" / r[0], index[r[1]]) for r in rows]
    x = torch.empty(len(items), 3, 64, 64, dtype=torch.uint8)
    for i, (p, _) in enumerate(items):
        with Image.open(p) as im:
            x[i] = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8).view(64, 64, 3).permute(2, 0, 1)
    y = torch.tensor([c for _, c in items], dtype=torch.long)
    with atomic_path(cache) as tmp:
        torch.save({"x": x, "y": y}, tmp)
    return x, y


def load_split(name: str, split: str, *, source: str, root: str | os.PathLike, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples and int64 labels of a split, the first ``limit`` of them.

    Images come as uint8 (N, C, H, W), tabular data as float32 (N, features). ``seed`` seeds the
    synthetic stand-in and the Iris split.
    """
    ds = info(name)
    if source == "synthetic":
        n = ds.n_train if split == "train" else ds.n_test
        return synthetic_images(ds.shape, ds.num_classes, min(n, limit) if limit else n, split, seed)
    if name == "iris":
        x, y = _load_iris(split, seed)
    elif not _present(name, Path(root)):
        raise missing_dataset_error(name, root)
    elif name == "tiny_imagenet":
        check_prepared(name, root)
        x, y = _load_tiny(Path(root), split)
    else:
        check_prepared(name, root)
        try:
            tvds = _tv_class(name)(str(root), train=(split == "train"), download=False)
        except RuntimeError as err:
            # torchvision's own message ("use download=True") names neither the root nor how this
            # workflow obtains data; a folder without its files is as missing as no folder.
            if "download=True" not in str(err):
                raise
            raise missing_dataset_error(name, root) from err
        x = torch.as_tensor(tvds.data)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        y = torch.as_tensor(tvds.targets, dtype=torch.long)
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
    """Float batches on ``device`` in ``order`` (default: as stored), from batch ``start`` on.

    uint8 images become floats in [0, 1]; float data (tabular features) pass as they are.
    """
    n = x.shape[0]
    idx = torch.arange(n) if order is None else order
    for b in range(start, (n + batch_size - 1) // batch_size):
        sel = idx[b * batch_size : (b + 1) * batch_size]
        xb = x[sel].to(device, non_blocking=True)
        yield (xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()), y[sel].to(device, non_blocking=True)
