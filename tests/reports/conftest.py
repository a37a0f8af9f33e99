"""Fixtures of the reports tests."""

import json

import pytest
from synth_fixture import synth_payload


@pytest.fixture
def synth_path(tmp_path):
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(synth_payload()))
    return path
