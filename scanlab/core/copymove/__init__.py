"""Copy-move detection: regions duplicated inside one scan, told apart from repeated glyphs.

See :mod:`scanlab.core.copymove.api` for the layer's contract and
:mod:`scanlab.core.copymove.dup` for the exact-duplication test, :mod:`scanlab.core.copymove.geo`
for rotated or scaled copies.
"""

from scanlab.core.copymove.api import CopyMovePair, CopyMoveResult, detect_copymove, pair_masks

__all__ = ["CopyMovePair", "CopyMoveResult", "detect_copymove", "pair_masks"]
