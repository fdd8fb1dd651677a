"""Task registry: a task adapter owns what differs between dense saliency and (next) zero-shot
classification: the attack objective, the model views for torchattacks and ART, and the metrics."""
from .saliency import SaliencyTask

TASKS = {
    "saliency": SaliencyTask,
}
