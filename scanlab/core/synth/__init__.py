"""The virtual scanner bank: simulated flatbed scanners, content, and forgeries.

See :mod:`scanlab.core.synth.scanner` for the physical model,
:mod:`scanlab.core.synth.content` for what is scanned,
:mod:`scanlab.core.synth.bank` for writing folder-per-scanner data sets and
:mod:`scanlab.core.synth.forge` for splices and copy-moves with exact masks.
"""
