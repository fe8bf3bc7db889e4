"""Evaluating language-queried separation: evaluation sets and the field's metrics.

* :mod:`~dgmo_pl.evaluation.manifest`: rows (mixture, query, true source) from a CSV manifest
  or AudioSep's LASS benchmark folder.
* :mod:`~dgmo_pl.evaluation.metrics`: SDR / SDRi and SI-SDR / SI-SDRi as the LASS papers report
  them, and CLAPScore.
* :mod:`~dgmo_pl.evaluation.example_set`: a small set of 0 dB mixtures of real recordings.
* :mod:`~dgmo_pl.evaluation.tiny_clap`: a tiny random CLAP for offline tests (imported on demand).
"""

from dgmo_pl.evaluation.manifest import (
    AUDIOSEP_BENCHMARKS,
    Row,
    audiosep_benchmarks,
    load_rows,
    read_audiosep,
    read_manifest,
)
from dgmo_pl.evaluation.metrics import ClapScorer, sdr, separation_metrics, si_sdr

__all__ = [
    "AUDIOSEP_BENCHMARKS",
    "ClapScorer",
    "Row",
    "audiosep_benchmarks",
    "load_rows",
    "read_audiosep",
    "read_manifest",
    "sdr",
    "separation_metrics",
    "si_sdr",
]
