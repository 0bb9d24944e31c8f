"""Evaluation: likelihoods in declared units, Parzen windows, classifier-feature metrics (FID, KID,
precision/recall, density/coverage), mode coverage on known mixtures, implicit 1-D densities, and
:func:`evaluate`, which computes whichever of them a model admits."""

from .metrics import evaluate
from .likelihood import likelihood_report, to_bits_per_dim
from .modes import mode_coverage
from .parzen import parzen_log_prob, parzen_protocol

__all__ = ["evaluate", "likelihood_report", "mode_coverage", "parzen_log_prob", "parzen_protocol", "to_bits_per_dim"]
