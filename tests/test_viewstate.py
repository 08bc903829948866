"""The Qt-free view state (issue 16, "the house"): observers, refusals, case view."""

from __future__ import annotations

import pytest

from scanlab.core.errors import ScanLabError
from scanlab.services.viewstate import ViewState


def test_observers_hear_only_real_changes():
    st = ViewState()
    heard: list[frozenset[str]] = []
    st.subscribe(heard.append)
    assert st.update(sub=128, stride=16) == {"sub"}  # stride 16 is the default: no change
    assert st.update(sub=128) == frozenset()
    assert heard == [frozenset({"sub"})]
    assert st.analysis_key() == (None, 128, 16, "auto")


@pytest.mark.parametrize("field,value", [("sub", 32), ("sub", 0), ("stride", 0), ("opacity", 101),
                                         ("threshold", -1), ("nonsense", 1)])
def test_bad_values_are_refused_in_words_and_change_nothing(field, value):
    st = ViewState()
    heard = []
    st.subscribe(heard.append)
    with pytest.raises(ScanLabError) as e:
        st.update(colormap="magma", **{field: value})
    assert str(value) in str(e.value) or field in str(e.value)
    assert st.colormap == "inferno" and heard == []  # atomic: the good value did not go in either


def test_case_view_round_trip_skips_bad_values():
    st = ViewState(opacity=33, colormap="magma", threshold=20, threshold_on=True)
    other = ViewState()
    other.apply_case_view(st.case_view())
    assert other.case_view() == st.case_view()
    other.apply_case_view({"opacity": "lots", "threshold": 500, "colormap": "viridis"})
    assert (other.opacity, other.threshold, other.colormap) == (33, 20, "viridis")
    assert other.threshold_value() == pytest.approx(0.2)
