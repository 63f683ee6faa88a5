"""Data after preparation: a file corrupted after ``prepare`` stops the job that loads it, naming the
file; a touched but intact file passes; a missing dataset names the data root and the README's
section instead of torchvision's "use download=True"."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest

from robrepro import data as D

DAMAGED = ("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data_root):
    """MNIST under a root of its own, prepared there once: the files the tests damage are copies
    (each test restores what it damaged with :func:`_restored`), the others links to the originals."""
    root = tmp_path_factory.mktemp("data") / "root"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_root / "MNIST" / "raw").iterdir():
        if f.name in DAMAGED:
            shutil.copy(f, raw / f.name)
        else:
            (raw / f.name).symlink_to(f)
    D.prepare("mnist", "real", root, [], download=False)
    return root


@contextmanager
def _restored(path):
    """Put ``path`` back as it was (bytes and times) after the block, whatever it did to it."""
    data, st = path.read_bytes(), path.stat()
    try:
        yield path
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _flip_a_byte(path, offset=5000):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_prepare_records_every_file_for_the_check_at_use(prepared):
    import json

    rows = json.loads(D.prepared_record("mnist", prepared).read_text())["files"]
    assert len(rows) == 8  # four archives and the four files extracted from them
    assert rows["t10k-images-idx3-ubyte"]["path"] == os.path.join("MNIST", "raw", "t10k-images-idx3-ubyte")
    D.load_split("mnist", "test", source="real", root=prepared, limit=3)  # intact: loads


def test_a_file_corrupted_after_preparation_stops_the_load_naming_it(prepared):
    with _restored(prepared / "MNIST" / "raw" / "t10k-images-idx3-ubyte") as victim:
        _flip_a_byte(victim)
        with pytest.raises(D.DataIntegrityError) as err:
            D.load_split("mnist", "test", source="real", root=prepared, limit=3)
        msg = str(err.value)
        assert str(victim) in msg and D.md5(victim) in msg and "prepared" in msg


def test_a_truncated_or_deleted_file_stops_the_load(prepared):
    with _restored(prepared / "MNIST" / "raw" / "train-labels-idx1-ubyte") as victim:
        victim.write_bytes(victim.read_bytes()[:100])
        with pytest.raises(D.DataIntegrityError, match="train-labels-idx1-ubyte"):
            D.load_split("mnist", "test", source="real", root=prepared, limit=3)  # any file of the dataset counts
        victim.unlink()
        with pytest.raises(D.DataIntegrityError, match="train-labels-idx1-ubyte: missing"):
            D.load_split("mnist", "test", source="real", root=prepared, limit=3)


def test_a_touched_but_intact_file_passes(prepared):
    """A file whose modification time changed is md5-checked, not refused: its content is intact."""
    with _restored(prepared / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") as victim:
        st = victim.stat()
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        D.load_split("mnist", "test", source="real", root=prepared, limit=3)


def test_a_missing_dataset_names_the_root_and_the_readme_section(tmp_path):
    root = tmp_path / "empty-root"
    root.mkdir()
    for name in ("mnist", "cifar10", "tiny_imagenet"):
        with pytest.raises(FileNotFoundError) as err:
            D.load_split(name, "test", source="real", root=root)
        msg = str(err.value)
        assert str(root.resolve()) in msg and 'README.md, section "Data"' in msg and "prepare-data" in msg
        assert "download=True" not in msg


def test_a_dataset_folder_without_its_files_is_missing_too(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='section "Data"'):
        D.load_split("mnist", "train", source="real", root=tmp_path)


def test_the_readme_has_the_section_the_errors_name(repo_root):
    assert "\n## Data\n" in (repo_root / "README.md").read_text()
