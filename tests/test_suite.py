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


def test_own_and_transfer_suites_expand_with_their_own_keys(tmp_path):
    own = load_suite("own")
    zoo = next(c for c in own.cells if c.attack == "zoo")
    assert zoo.threat.queries == 500 and zoo.images == 16 and zoo.spec()["images"] == 16
    assert {c.threat.norm for c in own.cells} >= {"l0", "l2", "patch", "linf"}
    moved = [c for c in load_suite("transfer").cells if c.surrogate]
    assert {c.surrogate for c in moved if "+" not in c.surrogate} == {"jldcf", "bbsnet", "d3net"}
    assert len({c.id for c in moved}) == len(moved) == 3 * 6  # three attacks, three surrogates and three pairs
    # cells without the optional keys keep the ids they had before those keys existed
    plain = tmp_path / "p.yaml"
    plain.write_text("cells:\n  - {attack: pgd, eps: 8/255}\n")
    assert set(load_suite(str(plain)).cells[0].spec()) == {"attack", "norm", "eps", "eps_depth", "modality", "steps",
                                                           "rel_step", "params"}
    plain.write_text("cells:\n  - {attack: patch, norm: patch, eps: 0.04, eps_depth: 0.1}\n")
    with pytest.raises(ValueError, match=r"p\.yaml: cells\[0\]: patch budget"):
        load_suite(str(plain))


def test_clip_suites_list_their_datasets_and_steps_default_per_attack(tmp_path):
    assert load_suite("clip").datasets == ("shapes", "shapes-captions")
    assert load_suite("rgbd-clip").datasets == ("synthetic-rgb2depth", "synthetic-depth2rgb")
    assert load_suite("default").datasets == ("synthetic",)
    steps = tmp_path / "s.yaml"
    steps.write_text("cells:\n  - {attack: autoattack, eps: 2/255}\n  - {attack: fgsm, eps: 2/255}\n"
                     "  - {attack: pgd, eps: 2/255}\n  - {attack: autoattack, eps: 2/255, steps: 20}\n")
    assert [c.threat.steps for c in load_suite(str(steps)).cells] == [100, 1, 10, 20]  # AutoAttack's reference: 100
    steps.write_text("dataset: {a: 1}\ncells:\n  - {attack: none}\n")
    with pytest.raises(ValueError, match=r"s\.yaml: 'dataset' is a dataset name or a list"):
        load_suite(str(steps))


def test_a_cell_may_be_limited_to_some_of_the_suites_datasets(tmp_path):
    jsma = [c for c in load_suite("clip").cells if c.attack in ("ta-jsma", "art-jsma")]
    assert jsma and all(c.datasets == ("shapes",) and c.spec()["datasets"] == ["shapes"] for c in jsma)
    assert all(c.datasets is None and "datasets" not in c.spec() for c in load_suite("clip").cells if c not in jsma)
    bad = tmp_path / "d.yaml"
    bad.write_text("dataset: [shapes]\ncells:\n  - {attack: pgd, eps: 1/255, datasets: [NJU2K]}\n")
    with pytest.raises(ValueError, match=r"d\.yaml: cell pgd names datasets \['NJU2K'\] outside"):
        load_suite(str(bad))
