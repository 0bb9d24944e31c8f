"""Evaluation: likelihoods in declared units, mode coverage on known mixtures, implicit 1-D densities."""

from .likelihood import likelihood_report, to_bits_per_dim
from .modes import mode_coverage

__all__ = ["likelihood_report", "mode_coverage", "to_bits_per_dim"]
