"""Property-based fuzzing of the image loader and the model-file reader (bounded for CI).

The long campaign is ``benchmarks/fuzz_campaign.py``; its figures are in HARDENING.md.
"""

from __future__ import annotations

import os

import pytest
from fuzz_targets import check_image, check_model, image_input, manifest_input, model_input
from hypothesis import HealthCheck, given, settings

N = int(os.environ.get("SCANLAB_FUZZ_EXAMPLES", "150"))
CI = settings(max_examples=N, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@CI
@given(image_input())
def test_image_loader_raises_only_documented_errors(data):
    check_image(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@CI
@given(data=model_input())
def test_model_reader_raises_only_documented_errors(folder, data):
    check_model(data, folder)


@CI
@given(data=manifest_input())
def test_any_manifest_json_is_accepted_or_refused_cleanly(folder, data):
    check_model(data, folder)
