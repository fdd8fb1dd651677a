"""Query budgets of the black-box attacks (attacks/queries.py): every model query is counted per image,
stays within the cell's ``queries`` and is what the attack and the runner record; ART's universal
perturbation is fitted once on train data and applied unchanged to every test image."""
import numpy as np
import pytest
import torch
from torch import Tensor, nn

import attacks.art_backend as art_backend
from attacks import ATTACKS, ThreatModel
from attacks.queries import QueryBudgetExceeded, QueryCounter
from benchmark import runner
from benchmark.checks import check_budget
from benchmark.data.labelled import LabelledBatch
from benchmark.perf import digits, train_cnn
from benchmark.results import RunStore
from benchmark.suite import Cell, Suite
from benchmark.tasks import ClassificationTask

TASK = ClassificationTask()
BUDGET = 300


class GreyInput(nn.Module):
    """An RGB classifier from the grey digits CNN: it sees the channel mean."""

    def __init__(self, cnn: nn.Module):
        super().__init__()
        self.cnn = cnn

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn(x.mean(1, keepdim=True))


class RowTally(nn.Module):
    """Counts every row the model answers, independently of the attacks' counter."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, u: Tensor) -> Tensor:
        self.rows += len(u)
        return self.inner(u)


@pytest.fixture(scope="module")
def digits_data():
    x_train, y_train, x_test, y_test = digits()
    model = GreyInput(train_cnn(x_train, y_train, epochs=4)).eval()
    return model, x_train.repeat(1, 3, 1, 1), y_train, x_test.repeat(1, 3, 1, 1), y_test


def _batch(x: Tensor, y: Tensor) -> LabelledBatch:
    return LabelledBatch([f"d{i}" for i in range(len(x))], x, None, y)


BLACK_BOX = [  # attack, threat (every one with BUDGET queries per image), params
    ("square", ThreatModel(eps=32 / 255, modality="rgb", queries=BUDGET), {}),
    ("art-square", ThreatModel(eps=32 / 255, modality="rgb", queries=BUDGET), {}),
    ("art-zoo", ThreatModel(norm="l2", eps=3.0, modality="rgb", queries=BUDGET), {}),
    ("art-hsj", ThreatModel(norm="l2", eps=3.0, modality="rgb", steps=10, queries=BUDGET), {}),
    ("art-hsj", ThreatModel(norm="linf", eps=32 / 255, modality="rgb", steps=10, queries=BUDGET), {}),
    ("zoo", ThreatModel(norm="l2", eps=3.0, modality="rgb", queries=BUDGET), {"coords": 16}),
]


@pytest.mark.parametrize("name,threat,params", BLACK_BOX, ids=[f"{c[0]}-{c[1].norm}" for c in BLACK_BOX])
def test_black_box_queries_are_counted_recorded_and_within_budget(digits_data, name, threat, params):
    model, _, _, x, y = digits_data
    x, y = x[:8], y[:8]
    torch.manual_seed(0)
    np.random.seed(0)
    attack = ATTACKS[name]
    assert attack.black_box
    space = TASK.attack_space(_batch(x, y), threat)
    tally = RowTally(TASK.attacked_model(model, space))
    counter = QueryCounter(tally, space.initial(), threat.queries)  # as the runner wraps the view
    out = attack(counter, space.initial(), y, threat, TASK, names=[str(i) for i in range(len(x))], seed=0, **params)
    check_budget([str(i) for i in range(len(x))], x, None, space.compose(out.u)[0], None, threat)
    assert torch.equal(out.info["queries"], counter.counts.float())  # the attack records the counter's count
    assert (counter.counts <= threat.queries).all() and counter.counts.min() > 0
    # every row the model answered is counted, but for the final check of a minimum-norm attack's result
    assert tally.rows == counter.counts.sum() + (len(x) if getattr(attack, "minimum_norm", False) else 0)


def test_an_attack_called_directly_counts_its_own_queries(digits_data):
    model, _, _, x, y = digits_data
    threat = ThreatModel(eps=32 / 255, modality="rgb", queries=100)
    space = TASK.attack_space(_batch(x[:8], y[:8]), threat)
    tally = RowTally(TASK.attacked_model(model, space))
    out = ATTACKS["square"](tally, space.initial(), y[:8], threat, TASK, seed=0)
    assert out.info["queries"].sum() == tally.rows and out.info["queries"].max() <= 100


def test_hop_skip_jump_stopped_by_the_budget_keeps_its_boundary_point(digits_data, monkeypatch):
    """With ART's own defaults (init_eval 100 per iteration), HopSkipJump runs out of queries mid-way: each
    image stops exactly at the budget and keeps its adversarial boundary point. (Its random starting point
    is uniform noise: the images are of classes other than the one this CNN gives uniform noise, so one
    is found.)"""
    model, _, _, x, y = digits_data
    with torch.no_grad():
        noise_class = model(torch.rand(64, *x.shape[1:])).argmax(1).mode().values
        keep = (model(x).argmax(1) == y) & (y != noise_class)
    x, y = x[keep][:4], y[keep][:4]
    monkeypatch.setattr(art_backend, "hop_skip_jump_schedule",
                        lambda queries, steps, dims, norm: {"max_iter": 50, "init_eval": 100, "max_eval": 1000})
    threat = ThreatModel(norm="l2", eps=100.0, modality="rgb", steps=50, queries=150)
    space = TASK.attack_space(_batch(x, y), threat)
    counter = QueryCounter(TASK.attacked_model(model, space), space.initial(), threat.queries)
    np.random.seed(0)
    out = ATTACKS["art-hsj"](counter, space.initial(), y, threat, TASK)
    assert (counter.counts == 150).all()
    with torch.no_grad():
        assert (model(out.u).argmax(1) != y).all()


def test_hop_skip_jump_is_reproducible_under_a_fixed_seed(digits_data):
    """ART seeds HopSkipJump's starting points from OS entropy; ours from numpy's seeded global RNG."""
    model, _, _, x, y = digits_data
    threat = ThreatModel(norm="l2", eps=100.0, modality="rgb", steps=5, queries=BUDGET)  # keep what it finds
    space = TASK.attack_space(_batch(x[:4], y[:4]), threat)
    runs = []
    for _ in range(2):
        np.random.seed(0)
        runs.append(ATTACKS["art-hsj"](TASK.attacked_model(model, space), space.initial(), y[:4], threat, TASK).u)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], space.initial())


def test_query_counter_charges_rows_to_their_images_and_refuses_past_the_budget():
    u0 = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    counter = QueryCounter(nn.Identity(), u0, budget=4)
    counter(u0)  # the batch's own size: row j is image j
    counter.copies_of(torch.tensor([2, 2]))(u0[:2])  # copies: charged to the image named
    with counter.charging(1):
        counter(u0)  # all to image 1
    counter(u0[[2, 0]] + 0.1)  # a subset: each row to the nearest clean image
    assert counter.counts.tolist() == [2, 4, 4]
    with pytest.raises(QueryBudgetExceeded, match="image 1: 4 queries spent, 1 more asked, budget 4"):
        counter(u0[1:2])
    assert counter.counts.tolist() == [2, 4, 4]  # the refused query is neither forwarded nor counted


def test_the_runner_stores_what_the_counter_saw(digits_data, tmp_path, monkeypatch):
    model, _, _, x, y = digits_data

    class Silent:
        """A black-box attack that spends 7 queries per image and reports none."""
        backend, norms, black_box = "test", ("linf",), True

        def __call__(self, dense, u0, target, threat, task, **params):
            with torch.no_grad():
                for _ in range(7):
                    dense(u0)
            return u0.clone()

    monkeypatch.setitem(ATTACKS, "silent", Silent())
    cell = Cell("silent", ThreatModel(eps=0.0, modality="rgb", queries=10))
    suite = Suite("t", ("digits",), batch_size=4, seed=0, cells=[cell])
    summary = runner.run_cell(cell, model, TASK, [_batch(x[:4], y[:4])], suite, runner.model_fingerprint(model),
                              RunStore(tmp_path))
    assert summary["info"]["queries"] == 7
    with pytest.raises(QueryBudgetExceeded):
        runner.run_cell(Cell("silent", ThreatModel(eps=0.0, modality="rgb", queries=6)), model, TASK,
                        [_batch(x[:4], y[:4])], suite, runner.model_fingerprint(model), RunStore(tmp_path / "b"))


# deepfool: the paper's Algorithm 1, one ART DeepFool per image, so fitted on fewer images and passes
# (2 passes over 128 images: 22 s against 120 s for 5 over 256); its minimal steps, projected, lower accuracy
# less (0.953 -> 0.805) than FGSM's (0.492)
@pytest.mark.parametrize("attacker, n_train, passes, drop", [("fgsm", 256, 5, 0.1), ("deepfool", 128, 2, 0.05)])
def test_art_uap_is_fitted_once_on_train_data_and_applied_unchanged(digits_data, attacker, n_train, passes, drop):
    model, x_train, y_train, x_test, y_test = digits_data
    threat = ThreatModel(eps=48 / 255, modality="rgb", steps=passes)
    train = [_batch(x_train[i:i + 64], y_train[i:i + 64]) for i in range(0, n_train, 64)]
    seen = []

    def views():
        for b in train:
            space = TASK.attack_space(b, threat)
            seen.append(b.names)
            yield TASK.attacked_model(model, space), space.initial(), b.target, b.names

    attack = ATTACKS["art-uap"]
    assert attack.universal_kind == "perturbation"
    np.random.seed(0)
    torch.manual_seed(0)
    delta = attack.fit(views, threat, TASK, attacker=attacker)
    assert len(seen) == len(train) and delta.shape == x_train.shape[1:]
    assert delta.abs().max() <= threat.space_eps + 1e-6 and delta.abs().max() > 0
    x, y = x_test[:128], y_test[:128]  # held-out images, never seen by the fit
    outputs = []
    for part in (slice(0, 64), slice(64, 128)):
        space = TASK.attack_space(_batch(x[part], y[part]), threat)
        u = attack(TASK.attacked_model(model, space), space.initial(), y[part], threat, TASK, universal=delta)
        assert torch.equal(u, (x[part] + delta).clamp(0, 1))  # the same perturbation for every image and batch
        outputs.append(u)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        attacked = (model(torch.cat(outputs)).argmax(1) == y).float().mean()
    assert attacked < clean - drop, (clean, attacked)


def test_a_remembering_counter_answers_a_row_asked_again_without_forwarding_it():
    u0 = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    tally = RowTally(nn.Identity())
    counter = QueryCounter(tally, u0)
    with counter.remembering():
        first = counter(u0)
        again = counter(u0[[2, 0]])  # the same rows of images 2 and 0: answered from memory
        moved = u0 + 0.25
        mixed = counter(torch.stack([u0[0], moved[1], u0[2]]))  # image 1's row is new
        counter(moved[[0]])
        counter(moved[[0]] + 0.125)  # image 0's third answer: its least recently asked one (u0[0]) goes
        counter(moved[[0]])
        counter(u0[[0]])
    assert torch.equal(first, u0) and torch.equal(again, u0[[2, 0]]) and torch.equal(mixed[1], moved[1])
    assert counter.counts.tolist() == [4, 2, 1] and tally.rows == 7
    counter(u0)  # outside remembering(): every row is forwarded again
    assert counter.counts.tolist() == [5, 3, 2]


def test_art_square_spends_one_query_per_iteration_on_a_dense_task(toy_model, toy_batch):
    """ART asks each current point three times per iteration; the counter pays once, so the budget buys
    (queries - probe) / restarts - 1 iterations, and a dense task (no early stop) spends all of it, but for
    a candidate that the projection made equal to the current point (no new question)."""
    from benchmark.tasks import SaliencyTask

    model, batch, task = toy_model, toy_batch, SaliencyTask()
    threat = ThreatModel(eps=8 / 255, modality="rgbd", queries=12)
    space = task.attack_space(batch, threat)
    tally = RowTally(task.attacked_model(model, space, batch))
    np.random.seed(0)
    out = ATTACKS["art-square"](tally, space.initial(), batch.target, threat, task)
    assert art_backend.square_iterations(12, 1) == 10
    queries = out.info["queries"]
    assert queries.max() == 12 and queries.min() >= 10 and tally.rows == queries.sum()
    assert not torch.equal(out.u, space.initial())
