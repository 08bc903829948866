"""From window probabilities to a verdict: the no-signal rule, calibration, the
open-set scorers, input gating and the verdict rules (see docs/glossary.md)."""
