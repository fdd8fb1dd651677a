"""Where a run's cells execute: the local loop in this process, or Ray workers (``--workers N``).

The runner plans a (model, dataset) run as groups of cells (one attack's crafting each, see
``runner.crafting_groups``) and hands them to an executor. Each Ray worker is an actor that loads the
model, the dataset's batches and the surrogates once, then runs the groups it is given and writes each
finished cell into the shared run folder, atomically, as the local loop does: a killed run resumes from
the cells on disk either way. Seeds come from (suite seed, cell, batch), so the order in which workers
finish changes no number.

Ray on one machine: ``--workers N`` starts a local instance with N x ``worker_cpus`` CPUs. On a cluster
started with ``ray start``: set ``RAY_ADDRESS`` (Ray reads it); every node must see the results folder
at the same path and run the same checkout.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import torch

if TYPE_CHECKING:
    from benchmark.runner import Cell, CellJob, CellRunner, RunConfig


class Executor(Protocol):
    def run(self, job: CellJob, groups: list[list[Cell]], local: Callable[[], CellRunner]) -> Iterator[int]:
        """Run every group of ``job``; yield the number of cells of each group as it finishes. ``local()``:
        a runner on the driver's loaded model, for an executor that runs cells in this process."""


class LocalExecutor:
    """The groups one after another in this process, on the driver's loaded model."""

    def run(self, job: CellJob, groups: list[list[Cell]], local: Callable[[], CellRunner]) -> Iterator[int]:
        runner = local()
        for cells in groups:
            yield runner.run(cells)


class _Worker:
    """A Ray actor: one :class:`CellRunner` with ``threads`` torch threads, as the driver set up torch."""

    def __init__(self, job: CellJob, threads: int, deterministic: bool):
        from benchmark.allocator import keep_freed_memory
        from benchmark.runner import CellRunner

        keep_freed_memory()
        os.chdir(job.cwd)  # the driver's relative paths (checkpoint cache, data, --ckpt) mean the same here
        torch.set_num_threads(threads)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.runner = CellRunner(job)

    def run(self, cells: list[Cell]) -> int:
        return self.runner.run(cells)


class RayExecutor:
    """``workers`` Ray actors, each declaring ``cpus`` CPUs (its torch threads) and, on a CUDA device, one GPU;
    groups go to whichever actor is free."""

    def __init__(self, workers: int, cpus: int = 1):
        self.workers, self.cpus = workers, cpus

    def run(self, job: CellJob, groups: list[list[Cell]], local: Callable[[], CellRunner]) -> Iterator[int]:
        from ray.util import ActorPool

        deterministic = torch.are_deterministic_algorithms_enabled()
        count = min(self.workers, len(groups))
        longest_first = sorted(groups, key=lambda cells: -sum(work(c) for c in cells))  # fewer idle workers at the end
        with ray_actors(_Worker, (job, self.cpus, deterministic), count, self.cpus, torch.device(job.cfg.device)) as actors:
            yield from ActorPool(actors).map_unordered(lambda worker, cells: worker.run.remote(cells), longest_first)


@contextmanager
def ray_actors(cls: type, args: tuple[Any, ...], count: int, cpus: int, device: torch.device) -> Iterator[list[Any]]:
    """``count`` Ray actors of ``cls(*args)``, each declaring ``cpus`` CPUs and, on a CUDA device, one GPU;
    killed on exit (their models and data go with them). Ray is started if it is not: the cluster at
    RAY_ADDRESS, or a local instance of ``count`` x ``cpus`` CPUs whose workers keep the driver's priority
    (Ray's default renices them to 15, so any other job on the machine takes their CPU). A Ray this call
    started is shut down on exit: a local instance sized for one run would leave the next run's extra
    actors pending forever."""
    import ray

    started = not ray.is_initialized()
    if started:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            os.environ.setdefault("RAY_worker_niceness", "0")  # an increment over the raylet's, the driver's
            ray.init(num_cpus=count * cpus, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=cpus, num_gpus=1 if device.type == "cuda" else 0)(cls)
    actors = [remote.remote(*args) for _ in range(count)]
    try:
        yield actors
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def work(cell: Cell) -> float:
    """A rough cost of a cell, to hand out the long ones first: its gradient steps (or iterations), times
    its EOT draws."""
    return (cell.attack != "none") * max(cell.threat.steps, 1) * int(cell.params.get("eot", 1)) + 1


def executor_for(cfg: RunConfig) -> Executor:
    return RayExecutor(cfg.workers, cfg.worker_cpus) if cfg.workers > 0 else LocalExecutor()
