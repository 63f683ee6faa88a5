"""Result files: atomic writes, and half-written files are never taken for results."""

import json

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
