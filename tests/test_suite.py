import pytest

from benchmark.suite import load_suite


def test_default_suite_expands_grid():
    s = load_suite("default")
    ids = [c.id for c in s.cells]
    assert len(ids) == len(set(ids))
    pgd = [c for c in s.cells if c.attack == "pgd"]
    assert {(c.threat.modality, round(c.threat.eps * 255)) for c in pgd} == {
        (m, e) for m in ("rgb", "depth", "rgbd") for e in (2, 4, 8)}
    assert any(c.attack == "none" for c in s.cells)


def test_suite_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cells:\n  - {attack: nosuch}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: cells\[0\]: unknown attack 'nosuch'"):
        load_suite(str(bad))
    bad.write_text("cells:\n  - {attack: pgd, eps: [eight]}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*'eight'"):
        load_suite(str(bad))
    bad.write_text("cells: [")
    with pytest.raises(ValueError, match=r"bad\.yaml: invalid YAML"):
        load_suite(str(bad))
    with pytest.raises(FileNotFoundError, match="built-in suites"):
        load_suite("no-such-suite")


def test_cell_id_depends_on_threat_not_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("cells:\n  - {attack: fgsm, eps: [1/255, 2/255]}\n")
    b.write_text("cells:\n  - {attack: fgsm, eps: [2/255]}\n  - {attack: fgsm, eps: 1/255}\n")
    assert {c.id for c in load_suite(str(a)).cells} == {c.id for c in load_suite(str(b)).cells}
