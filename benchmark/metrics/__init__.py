"""Metric registry: which metrics each task reports, and which direction is better."""
from .saliency import HIGHER_IS_BETTER as SALIENCY_HIGHER_IS_BETTER
from .saliency import SUMMARY as SALIENCY_METRICS

METRICS = {
    "saliency": SALIENCY_METRICS,
}
HIGHER_IS_BETTER = {**SALIENCY_HIGHER_IS_BETTER}
