"""The classification task: scoring (top-k, ASR), budget checks on a single-modality query, and the
classifier attacks of both libraries on a small trained CNN (budget holds, accuracy moves)."""
import functools

import numpy as np
import pytest
import torch
import torchattacks

from attacks import ATTACKS, ThreatModel
from attacks.autoattack import StandardAutoAttack
from attacks.base import within_budget
from benchmark.checks import BudgetViolation, check_budget
from benchmark.data.labelled import LabelledBatch
from benchmark.perf import digits, train_cnn
from benchmark.data import load_dataset
from benchmark.suite import Cell
from benchmark.tasks import ClassificationTask
from benchmark.tasks.classification import Prediction

TASK = ClassificationTask()


class GreyInput(torch.nn.Module):
    """An RGB classifier from the grey digits CNN: it sees the channel mean."""

    def __init__(self, cnn: torch.nn.Module):
        super().__init__()
        self.cnn = cnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(x.mean(1, keepdim=True))


@pytest.fixture(scope="module")
def digits_model():
    x_train, y_train, x_test, y_test = digits()
    model = GreyInput(train_cnn(x_train, y_train, epochs=4)).eval()
    x_test = x_test.repeat(1, 3, 1, 1)
    with torch.no_grad():
        correct = model(x_test).argmax(1) == y_test
    return model, x_test[correct][:32], y_test[correct][:32]


def test_score_ranks_and_asr_against_clean():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    batch = LabelledBatch(["a", "b", "c"], torch.zeros(3, 3, 4, 4), None, torch.tensor([0, 2, 0]))
    scored = TASK.score(None, Prediction(logits, batch.rgb), batch)
    assert [s["rank"] for s, _ in scored] == [0, 1, 2]
    assert [s["top1"] for s, _ in scored] == [1.0, 0.0, 0.0]
    records = [{"image": n, **s} for n, (s, _) in zip("abc", scored)]
    assert TASK.summarise(records, {}) == {"top1": pytest.approx(1 / 3), "top5": 1.0, "top10": 1.0}
    clean = [{"image": "a", "top1": 1.0}, {"image": "b", "top1": 1.0}, {"image": "c", "top1": 0.0}]
    # a stays correct, b is broken, c was wrong clean and does not count
    assert TASK.successes(records, clean) == [False, True]


def test_ties_and_nan_follow_one_rule_in_scoring_and_attacks():
    """A tie goes to the lower index, as argmax (every library attack) decides it; NaN is never correct."""
    logits = torch.tensor([[1.0, 2.0, 2.0], [2.0, 2.0, 0.0], [0.0, float("nan"), 3.0], [3.0, 1.0, 1.0]])
    label = torch.tensor([2, 0, 2, 0])
    scores = [s for s, _ in TASK.score(torch.nn.Identity(), Prediction(logits, logits), LabelledBatch(
        ["a", "b", "c", "d"], logits, None, label))]
    assert [s["top1"] for s in scores] == [0.0, 1.0, 0.0, 1.0] and [s["rank"] for s in scores] == [1, 0, 3, 0]
    assert TASK.success(logits, label).tolist() == [True, False, True, False]
    finite = ~logits.isnan().any(1)
    assert torch.equal(TASK.success(logits, label)[finite], (logits.argmax(1) != label)[finite])


def test_caption_retrieval_merges_duplicate_captions():
    ds = load_dataset("shapes-captions")
    assert len(set(ds.classnames)) == len(ds.classnames) < len(ds)  # 18 test images share a caption
    for i in range(len(ds)):
        item = ds[i]
        assert ds.classnames[item.label] == item.caption


def test_a_cell_attacks_the_query_modality_of_its_dataset():
    depth_queries = load_dataset("synthetic-depth2rgb")
    default = Cell("pgd", ThreatModel(eps=0.01))  # modality rgbd: every input the model takes
    assert TASK.bind(default, depth_queries).threat.modality == "depth"
    assert TASK.bind(default, load_dataset("shapes")).threat.modality == "rgb"
    with pytest.raises(ValueError, match="attacks rgb, but the queries of dataset 'synthetic-depth2rgb' are depth"):
        TASK.bind(Cell("pgd", ThreatModel(eps=0.01, modality="rgb")), depth_queries)


def test_prepare_refuses_a_dataset_the_model_cannot_score():
    with pytest.raises(ValueError, match="'synthetic-rgb2depth' scores queries against an image gallery"):
        TASK.prepare(GreyInput(torch.nn.Identity()), load_dataset("synthetic-rgb2depth"))


def test_budget_check_on_a_query_without_depth():
    x = torch.rand(2, 3, 8, 8) * 0.5 + 0.25
    th = ThreatModel(eps=4 / 255, modality="rgb")
    norms = check_budget(["a", "b"], x, None, x + 4 / 255, None, th)
    assert set(norms) == {"linf_rgb", "l2_rgb", "l0"}
    with pytest.raises(BudgetViolation, match="image b"):
        check_budget(["a", "b"], x, None, torch.cat([x[:1], x[1:] + 5 / 255]), None, th)
    depth = torch.rand(2, 1, 8, 8) * 0.5
    check_budget(["a", "b"], None, depth, None, depth + 4 / 255, ThreatModel(eps=4 / 255, modality="depth"))
    with pytest.raises(ValueError, match="no depth input"):
        TASK.attack_space(LabelledBatch(["a", "b"], x, None, torch.zeros(2, dtype=torch.long)),
                          ThreatModel(modality="rgbd"))


def test_within_budget_keeps_only_perturbations_inside_eps(digits_model):
    model, x, y = digits_model
    th = ThreatModel(norm="l2", eps=1.0, modality="rgb")
    u = x.clone()
    u[0] += 0.5 / 16 / 3 ** 0.5  # L2 0.5 over 3x16x16: inside
    u[1] += 2.0 / 16 / 3 ** 0.5  # L2 2.0: outside, reverted
    out = within_budget(model, x, u, y, th, TASK)
    assert torch.equal(out.u[0], u[0]) and torch.equal(out.u[1], x[1])
    with torch.no_grad():
        wrong = model(u).argmax(1) != y
    assert torch.isinf(out.info["found_norm"][~wrong]).all()
    assert torch.allclose(out.info["found_norm"][:2][wrong[:2]], torch.tensor([0.5, 2.0])[wrong[:2]], rtol=1e-4)


CASES = [  # attack, threat, extra params: each must hold its budget and lower accuracy on the digits CNN.
    # The CNN sees the channel mean of 3 equal channels, so L2 budgets are sqrt(3) x a grey image's.
    # art-uap is fitted on train data first: tests/test_query_budget.py.
    ("pgd", ThreatModel(eps=32 / 255, modality="rgb", steps=10), {}),
    ("autoattack", ThreatModel(eps=32 / 255, modality="rgb"), {}),
    ("fab", ThreatModel(eps=32 / 255, modality="rgb", steps=10), {}),
    ("square", ThreatModel(eps=48 / 255, modality="rgb", queries=300), {}),
    ("deepfool", ThreatModel(norm="l2", eps=3.0, modality="rgb", steps=50), {}),
    ("ta-cw", ThreatModel(norm="l2", eps=3.0, modality="rgb", steps=50), {"c": 10.0, "lr": 0.05}),
    ("ta-jsma", ThreatModel(norm="l0", eps=0.5, modality="rgb"), {}),
    ("art-fgm", ThreatModel(eps=32 / 255, modality="rgb"), {}),
    ("art-cw", ThreatModel(norm="l2", eps=3.0, modality="rgb", steps=10), {"initial_const": 10.0, "learning_rate": 0.1}),
    ("art-deepfool", ThreatModel(norm="l2", eps=3.0, modality="rgb", steps=50), {}),
    ("art-jsma", ThreatModel(norm="l0", eps=0.5, modality="rgb"), {}),
    ("art-square", ThreatModel(eps=64 / 255, modality="rgb", steps=300), {}),
    ("art-hsj", ThreatModel(norm="l2", eps=5.0, modality="rgb", steps=5, queries=300), {}),
]


@pytest.mark.parametrize("name,threat,params", CASES, ids=[c[0] for c in CASES])
def test_classifier_attacks_hold_the_budget_and_lower_accuracy(digits_model, name, threat, params):
    model, x, y = digits_model
    x, y = x[:16], y[:16]
    torch.manual_seed(0)
    np.random.seed(0)
    batch = LabelledBatch([f"d{i}" for i in range(len(x))], x, None, y)
    space = TASK.attack_space(batch, threat)
    out = ATTACKS[name](TASK.attacked_model(model, space), space.initial(), y, threat, TASK, names=batch.names,
                        seed=0, **params)
    u = out.u if hasattr(out, "u") else out
    rgb, _ = space.compose(u)
    check_budget(batch.names, x, None, rgb, None, threat)
    with torch.no_grad():
        accuracy = (model(rgb).argmax(1) == y).float().mean().item()
    assert accuracy <= 0.75, f"{name}: accuracy {accuracy:.2f} under attack (clean 1.0)"


def test_autoattack_is_deterministic_under_a_fixed_seed_and_uses_the_models_classes(digits_model, monkeypatch):
    model, x, y = digits_model
    th = ThreatModel(eps=32 / 255, modality="rgb")
    runs = []
    for global_seed in (123, 999):  # only the attack's own seed may fix the result
        torch.manual_seed(global_seed)
        runs.append(ATTACKS["autoattack"](model, x[:4], y[:4], th, TASK, seed=7))
    assert not torch.equal(runs[0], x[:4])
    assert torch.equal(runs[0], runs[1])
    built = []
    original = StandardAutoAttack.parts

    def spy(self, *args):
        built.append(args[2:])
        return original(self, *args)

    monkeypatch.setattr(StandardAutoAttack, "parts", spy)
    ATTACKS["autoattack"](model, x[:2], y[:2], th, TASK, seed=7)
    assert built == [(10, 7)]  # the model's class count, the cell's seed


@pytest.mark.parametrize("n_classes,targets", [(10, 9), (256, 9), (8, 7)])
def test_autoattack_parts_are_configured_as_the_reference_standard_version(n_classes, targets):
    th = ThreatModel(norm="l2", eps=0.5, modality="rgb", steps=StandardAutoAttack.default_steps)
    apgd, apgd_t, fab_t, square = StandardAutoAttack().parts(torch.nn.Linear(4, n_classes), th, n_classes, 3)
    assert [type(a) for a in (apgd, apgd_t, fab_t, square)] == [torchattacks.APGD, torchattacks.APGDT,
                                                                torchattacks.FAB, torchattacks.Square]
    assert apgd.loss == "ce" and apgd.steps == apgd_t.steps == fab_t.steps == 100
    assert apgd_t.n_target_classes == fab_t.n_target_classes == targets and fab_t.multi_targeted
    assert square.n_queries == 5000 and not square.rescale_schedule and square.p_init == 0.8
    assert all(a.seed == 3 and a.n_restarts == 1 and a.norm == "L2" and a.eps == 0.5
               for a in (apgd, apgd_t, fab_t, square))
