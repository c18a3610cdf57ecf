"""Incompatible method combinations are refused at config time, with the field named."""

import pytest

from mcit.config import load_config
from mcit.errors import UserError
from mcit.strategies import STRATEGIES


def test_methods_compose_as_a_chain():
    config = load_config(None, ["method=[er, dgg]"])
    assert [m.name for m in config.method] == ["er", "dgg"]


def test_a_method_listed_twice_is_refused():
    with pytest.raises(UserError, match=r"method: .*'er' is listed twice"):
        load_config(None, ["method=[er, ewc, er]"])


def test_joint_does_not_combine_with_other_methods():
    assert STRATEGIES.get("joint").composable is False
    with pytest.raises(UserError, match=r"'joint' cannot be combined with other methods"):
        load_config(None, ["method=[joint, er]"])
    assert [m.name for m in load_config(None, ["method=[joint]"]).method] == ["joint"]


def test_seqft_is_a_valid_chain_element():
    assert STRATEGIES.get("seqft").composable is True
