"""Result files: atomic writes, and half-written files are never taken for results."""

import json
import os
import stat

import pytest

from robrepro.results import atomic_path, load_result, provenance, write_json_atomic, write_result


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_result_refuses_partial_and_foreign_files(tmp_path):
    (tmp_path / "half.json").write_text('{"kind": "attack", "per_eps": [')
    with pytest.raises(ValueError, match="half.json"):
        load_result(tmp_path / "half.json")
    (tmp_path / "nomark.json").write_text('{"kind": "attack"}')
    with pytest.raises(ValueError, match="completion marker"):
        load_result(tmp_path / "nomark.json")
    import time

    prov = provenance(spec={"x": 1}, seed=0, device="cpu", data_source="real", started=time.time())
    write_result(tmp_path / "ok.json", "train", {"v": 1}, prov)
    assert load_result(tmp_path / "ok.json", "train")["v"] == 1
    with pytest.raises(ValueError, match="expected a 'attack'"):
        load_result(tmp_path / "ok.json", "attack")
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_result_files_follow_the_umask(tmp_path, umask):
    """Results, tables and models are read by collaborators and web servers: the mode is the one
    any new file gets under the umask (0644 / 0664), never owner-only."""
    import time

    old = os.umask(umask)
    try:
        prov = provenance(spec={}, seed=0, device="cpu", data_source="real", started=time.time())
        write_result(tmp_path / "eval" / "r.json", "attack", {}, prov)
        with atomic_path(tmp_path / "model.pt") as tmp:  # the way models, CSVs and figures are written
            tmp.write_bytes(b"weights")
    finally:
        os.umask(old)
    for f in (tmp_path / "eval" / "r.json", tmp_path / "model.pt"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
