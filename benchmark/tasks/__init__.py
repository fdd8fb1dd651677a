"""Task registry: a task adapter owns what differs between dense saliency and classification (and
next, CLIP zero-shot): the attack objectives, the model views for torchattacks and ART, and the metrics."""
from .classification import ClassificationTask
from .saliency import SaliencyTask

TASKS = {
    "saliency": SaliencyTask,
    "classification": ClassificationTask,
}
