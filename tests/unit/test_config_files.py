"""The shipped example configs stay valid, and embedded.yaml really is the default."""

from pathlib import Path

import pytest

from mcit.config import RunConfig, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_there_are_example_configs():
    assert [p.name for p in CONFIGS if p.name == "embedded.yaml"] == ["embedded.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_validates(path):
    assert isinstance(load_config(path), RunConfig)


def test_embedded_yaml_spells_out_the_defaults():
    assert load_config(Path(__file__).parents[2] / "configs" / "embedded.yaml") == RunConfig()
