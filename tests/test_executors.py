"""Scale-out (benchmark/executors.py): concurrent leaderboard writers lose no row; cells run on Ray workers
equal the local loop's and a run killed part-way resumes on them."""
import multiprocessing
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark import leaderboard
from benchmark.executors import ray_actors
from benchmark.runner import RunConfig, run

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def _write_rows(directory: str, rows: pd.DataFrame, start: int) -> None:
    for i in range(start, len(rows), 4):  # one row per update, as many updates as there are writers' rows
        leaderboard.update(Path(directory), "saliency", rows.iloc[[i]])


def test_concurrent_writers_keep_every_row(tmp_path):
    rows = leaderboard.read_table(LEADERBOARDS / "saliency.csv").head(24)
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write_rows, args=(str(tmp_path), rows, k)) for k in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
        assert w.exitcode == 0
    table = leaderboard.read_table(tmp_path / "saliency.csv")
    assert len(table) == len(rows)
    key = leaderboard.KEY[:4] + ["attack", "modality", "eps"]
    assert sorted(map(tuple, leaderboard.key_strings(table, key).values)) == \
        sorted(map(tuple, leaderboard.key_strings(leaderboard.with_key_columns(rows), key).values))


SUITE = """
dataset: synthetic
batch_size: 4
seed: 0
limit: 4
cells:
  - {attack: none}
  - {attack: fgsm, eps: 8/255, modality: [rgb, rgbd]}
  - {attack: pgd, eps: 8/255, modality: depth, steps: 3}
  - {attack: none, defense: {name: median, window: 3, modality: rgbd}}
  - {attack: fgsm, eps: 8/255, modality: rgbd, defense: {name: median, window: 3, modality: rgbd},
     eval: [oblivious, adaptive]}
"""


@pytest.mark.slow
def test_ray_workers_resume_a_killed_run_with_the_local_loops_numbers(pinned_tiny, tmp_path):
    pytest.importorskip("ray")
    suite = tmp_path / "scale.yaml"
    suite.write_text(SUITE)

    def bench(name: str, workers: int) -> Path:
        cfg = RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(suite), workers=workers,
                        results_dir=tmp_path / "results", leaderboard_dir=tmp_path / name)
        [root] = run(cfg)
        return root

    root = bench("local", 0)
    local = pd.read_csv(tmp_path / "local" / "saliency.csv")
    # kill the run after its first cells: the later cells of three craftings (of five) never finished
    summaries = {p.parent.name: p.read_text() for p in (root / "cells").glob("*/summary.json")}
    killed = [c for c in sorted(summaries) if '"attack": "none"' not in summaries[c]][:3]
    kept = {c: (root / "cells" / c / "summary.json").stat().st_mtime_ns for c in summaries if c not in killed}
    for c in killed:
        shutil.rmtree(root / "cells" / c)
    bench("ray", 2)
    assert all((root / "cells" / c / "summary.json").is_file() for c in killed)
    assert {c: (root / "cells" / c / "summary.json").stat().st_mtime_ns for c in kept} == kept  # not redone
    resumed = pd.read_csv(tmp_path / "ray" / "saliency.csv")
    assert len(resumed) == len(local) == 7
    # one thread per worker against the test's threads: equal to the CSV's last digit (1e-6); the defense's
    # and the attack's time per image are measurements
    pd.testing.assert_frame_equal(*(t.drop(columns=["commit", "defense_ms", "attack_ms"]) for t in (resumed, local)),
                                  check_exact=False, rtol=0, atol=2e-6)


def test_ray_workers_keep_the_drivers_priority(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class Niceness:
        def value(self) -> int:
            return os.nice(0)

    ray.shutdown()  # a fresh local instance (Ray's default starts its workers at nice 15)
    with ray_actors(Niceness, (), 1, 1, torch.device("cpu")) as [actor]:
        assert ray.get(actor.value.remote()) == os.nice(0)


def test_a_ray_started_for_one_run_is_shut_down_so_a_larger_run_gets_all_its_actors(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class Pid:
        def value(self) -> int:
            return os.getpid()

    ray.shutdown()
    with ray_actors(Pid, (), 1, 1, torch.device("cpu")) as [actor]:  # a local instance of 1 CPU
        ray.get(actor.value.remote(), timeout=120)
    assert not ray.is_initialized()
    with ray_actors(Pid, (), 2, 1, torch.device("cpu")) as actors:  # pending forever on a 1-CPU instance
        assert len(set(ray.get([a.value.remote() for a in actors], timeout=120))) == 2
