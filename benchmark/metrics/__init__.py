"""Metric registry: which metrics each task reports, and which direction is better."""
from .saliency import HIGHER_IS_BETTER as SALIENCY_HIGHER_IS_BETTER
from .saliency import SUMMARY as SOD_METRICS

# Classification (zero-shot, and retrieval as classification over a gallery, where top-k is recall@k):
# top-k accuracy (robust accuracy under attack), the attack success rate over clean-correct images, and
# for models with an image-depth matching head the matching accuracy ITM.
CLASSIFICATION_METRICS = ("top1", "top5", "top10", "ITM", "ASR")

# Saliency: the SOD metrics, and the attack success rate over the images the clean map gets right
# (IoU >= 0.5 with the GT; an attack succeeds below 0.5).
SALIENCY_METRICS = (*SOD_METRICS, "ASR")

# Poisoning (benchmark/poisoning.py): clean zero-shot top-k of a model pre-trained on poisoned pairs and the
# attack's success on it (benchmark/metrics/poisoning.py): lower is better.
POISONING_METRICS = ("top1", "top5", "backdoor_success", "targeted_success")

METRICS = {
    "saliency": SALIENCY_METRICS,
    "classification": CLASSIFICATION_METRICS,
    "poisoning": POISONING_METRICS,
}
HIGHER_IS_BETTER = {**SALIENCY_HIGHER_IS_BETTER, **{m: m != "ASR" for m in CLASSIFICATION_METRICS},
                    "backdoor_success": False, "targeted_success": False}
