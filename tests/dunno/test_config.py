"""The shared run-configuration plumbing: ``RunConfig.from_dict`` and ``--option`` parsing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dunno.config import RunConfig, parse_option_value, parse_options
from dunno.validation import check_int


@dataclass
class _Config(RunConfig):
    epochs: int = 1
    width: int | None = None

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", self, low=1)
        check_int(self.width, "width", self, low=1, allow_none=True)


@pytest.mark.parametrize(
    "text, expected",
    [("8", 8), ("0.5", 0.5), ("-3e-4", -3e-4), ("true", True), ("False", False),
     ("TRUE", True), ("null", None), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
     ("zlib", "zlib"), ("", ""), ("1-4", "1-4")],
)
def test_option_values_are_read_as_json_else_kept_as_strings(text, expected):
    value = parse_option_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_options_builds_a_dict_and_a_later_repeat_wins():
    got = parse_options(["depth=8", "spectral_norm=true", "name=a=b", " width =32", "depth=20"])
    assert got == {"depth": 20, "spectral_norm": True, "name": "a=b", "width": 32}


@pytest.mark.parametrize("item", ["depth", "=8", " =8"])
def test_parse_options_names_the_flag_for_a_malformed_item(item):
    with pytest.raises(ValueError, match=r"--param must look like KEY=VALUE.*" + repr(item)[1:-1]):
        parse_options([item], "--param")


def test_from_dict_builds_and_rejects_unknown_keys():
    assert _Config.from_dict({"epochs": 3}) == _Config(epochs=3)
    with pytest.raises(ValueError, match=r"Unknown _Config key\(s\) \['epoch'\]; known keys: "
                                         r"\['epochs', 'width'\]"):
        _Config.from_dict({"epoch": 3})


@pytest.mark.parametrize("kwargs, name", [({"epochs": 0}, "epochs"), ({"epochs": True}, "epochs"),
                                          ({"epochs": 2.0}, "epochs"), ({"width": 0}, "width")])
def test_int_checks_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of _Config must be"):
        _Config(**kwargs)


def test_resolve_layers_defaults_config_overrides_and_named_values():
    base = _Config(epochs=3, width=4)
    assert _Config.resolve() == _Config()
    assert _Config.resolve(base) == base
    assert _Config.resolve(base, {"width": 8}) == _Config(epochs=3, width=8)
    # named values win over overrides; None means "not given"
    assert _Config.resolve(base, {"epochs": 5}, epochs=7, width=None) == _Config(epochs=7, width=4)
    with pytest.raises(ValueError, match=r"Unknown _Config key\(s\) \['depth'\]"):
        _Config.resolve(base, {"depth": 2})
