"""Evaluating language-queried separation: evaluation sets and the field's metrics.

* :mod:`~dgmo_pl.evaluation.manifest`: rows (mixture, query, true source) from a CSV manifest
  or AudioSep's LASS benchmark folder.
* :mod:`~dgmo_pl.evaluation.metrics`: SDR / SDRi and SI-SDR / SI-SDRi as the LASS papers report
  them, and CLAPScore.

The example set and the tiny CLAP that the tests use are in :mod:`dgmo_pl.testing`.
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
