"""The registry helper: register / create / available, duplicates, unknown names, and
third-party plugins found through entry points (a tiny installed distribution on a temporary
``sys.path``)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from dunno.errors import PluginError
from dunno.registry import Registry
from uncertainty.ood import DETECTORS, ModelOutputs, available_detectors, make_detector


class Widget:
    name = "widget"

    def __init__(self, size=1):
        self.size = size


# --------------------------------------------------------------------------- built-in use
def test_register_create_get_available_contains():
    reg = Registry("widget")
    assert reg.available() == [] and len(reg) == 0 and "widget" not in reg
    assert reg.register(obj=Widget) is Widget  # name from Widget.name
    reg.register("small", lambda: Widget(size=0))
    assert reg.available() == ["widget", "small"]  # registration order
    assert list(reg) == ["widget", "small"] and len(reg) == 2
    assert "widget" in reg and "nope" not in reg and 3 not in reg
    assert reg.get("widget") is Widget and reg["widget"] is Widget
    assert dict(reg.items()) == {"widget": Widget, "small": reg["small"]}
    made = reg.create("widget", size=4)
    assert isinstance(made, Widget) and made.size == 4
    assert reg.create("small").size == 0
    assert reg.unregister("small") is not None and reg.available() == ["widget"]


def test_register_as_a_decorator():
    reg = Registry("widget")

    @reg.register
    class A(Widget):
        name = "a"

    @reg.register("b")
    class B(Widget):
        pass

    @reg.register()
    class C(Widget):
        name = "c"

    assert reg.available() == ["a", "b", "c"]
    assert (reg["a"], reg["b"], reg["c"]) == (A, B, C)


def test_duplicate_names_are_refused():
    reg = Registry("widget")
    reg.register("w", Widget)
    reg.register("w", Widget)  # the same object again: a no-op
    with pytest.raises(ValueError, match="A widget named 'w' is already registered"):
        reg.register("w", type("Other", (Widget,), {}))
    assert reg["w"] is Widget


def test_unknown_names_list_the_known_ones():
    reg = Registry("widget")
    reg.register("a", Widget)
    reg.register("b", Widget)
    for call in (reg.get, reg.create, reg.__getitem__, reg.unregister):
        with pytest.raises(ValueError, match=r"^Unknown widget 'nope'\. Available: a, b\.$"):
            call("nope")


def test_registration_needs_a_name_and_passes_the_check():
    def check(name, obj):
        if not isinstance(obj, type):
            raise ValueError(f"A widget must be a class. Got {obj!r}.")

    reg = Registry("widget", check=check)
    with pytest.raises(ValueError, match="needs a name"):
        reg.register(obj=object)
    with pytest.raises(ValueError, match="must be a class"):
        reg.register("x", 3)
    with pytest.raises(ValueError, match="takes a name and an object"):
        reg.register(Widget, Widget)


# --------------------------------------------------------------------------- plugins
def _install(tmp_path, monkeypatch, dist: str, entry_points: str, modules: dict[str, str]):
    """A tiny installed distribution: ``<dist>-0.1.dist-info`` with ``entry_points.txt``, and
    its modules, on a temporary ``sys.path`` entry."""
    info = tmp_path / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_base_class_registry_takes_named_subclasses_only():
    class Widget:
        name = ""

    class Good(Widget):
        name = "good"

    class Other:
        name = "other"

    reg = Registry("widget", base=Widget)
    reg.register(obj=Good)
    assert reg.create("good").__class__ is Good
    with pytest.raises(ValueError, match=r"^'other' cannot be registered in the widget registry: "
                                         r"it must be a subclass of Widget\. Got <class "):
        reg.register(obj=Other)
    with pytest.raises(ValueError, match=r"^Good is named 'good'; it cannot be registered in the "
                                         r"widget registry as 'better'\.$"):
        reg.register("better", Good)
    assert reg.available() == ["good"]


def test_plugins_are_listed_lazily_and_loaded_on_first_lookup(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "dunno-test-widgets", """
        [dunno.test_widgets]
        gadget = dunno_test_gadget:Gadget
        """, {"dunno_test_gadget": """
        class Gadget:
            name = "gadget"
        """})
    reg = Registry("widget", "dunno.test_widgets")
    reg.register("w", Widget)
    assert reg.available() == ["w", "gadget"] and "gadget" in reg
    assert "dunno_test_gadget" not in sys.modules  # listed, not imported
    gadget = reg.get("gadget")
    assert gadget.__name__ == "Gadget" and "dunno_test_gadget" in sys.modules
    assert reg.create("gadget").name == "gadget"
    assert reg.available() == ["w", "gadget"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("gadget", Widget)


def test_a_broken_plugin_is_named(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "dunno-test-broken", """
        [dunno.test_broken]
        fine = dunno_test_fine:Fine
        broken = dunno_test_missing_module:Thing
        """, {"dunno_test_fine": "class Fine:\n    pass\n"})
    reg = Registry("widget", "dunno.test_broken")
    assert reg.available() == ["fine", "broken"]
    assert reg.get("fine").__name__ == "Fine"  # one broken plugin spoils no other lookup
    with pytest.raises(PluginError, match=r"widget plugin 'broken = dunno_test_missing_module:"
                                          r"Thing'.*'dunno-test-broken 0\.1'.*could not be "
                                          r"loaded: ModuleNotFoundError"):
        reg.get("broken")


def test_a_plugin_cannot_take_a_built_in_name(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "dunno-test-clash", """
        [dunno.test_clash]
        w = dunno_test_clash:Clash
        """, {"dunno_test_clash": "class Clash:\n    pass\n"})
    reg = Registry("widget", "dunno.test_clash")
    reg.register("w", Widget)
    with pytest.raises(PluginError, match="uses the name 'w' of a registered widget"):
        reg.available()


_DETECTOR_PLUGIN = """
    import torch

    from uncertainty.ood import OODDetector


    class NegativeMaxLogit(OODDetector):
        '''Minus the largest logit, times a scale (higher = more OOD).'''

        name = "third-party-max-logit"
        reference = "a test plugin"

        def __init__(self, model=None, *, scale: float = 1.0, layer=None) -> None:
            super().__init__(model, layer=layer)
            self.scale = scale

        def _validate_params(self) -> None:
            super()._validate_params()
            if not (isinstance(self.scale, float) and self.scale > 0):
                raise ValueError(
                    f"The 'scale' parameter of {type(self).__name__} must be a float > 0. "
                    f"Got {self.scale!r} instead."
                )

        def _score(self, outputs):
            return -self.scale * outputs.logits.max(dim=1).values
    """


@pytest.fixture
def detector_plugin(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "dunno-test-detector", """
        [dunno.detectors]
        third-party-max-logit = dunno_test_detector:NegativeMaxLogit
        """, {"dunno_test_detector": _DETECTOR_PLUGIN})
    DETECTORS.refresh()
    yield "third-party-max-logit"
    DETECTORS.refresh()  # forget it; sys.path is restored by monkeypatch


def test_a_third_party_detector_works_through_make_detector(detector_plugin):
    name = detector_plugin
    assert name in available_detectors() and name in DETECTORS
    torch.manual_seed(0)
    model = nn.Linear(4, 3).eval()
    x = torch.randn(20, 4)
    det = make_detector(name, model, scale=2.0)
    assert type(det).__module__ == "dunno_test_detector"
    # the estimator contract
    assert repr(det) == "NegativeMaxLogit(scale=2.0)"
    assert det.get_params() == {"scale": 2.0, "layer": None}
    assert det.set_params(scale=3.0) is det and det.scale == 3.0
    with pytest.raises(ValueError, match=r"Invalid parameter\(s\) \['nope'\].*\['scale', "
                                         r"'layer'\]"):
        det.set_params(nope=1)
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['nope'\]"):
        make_detector(name, model, nope=1)
    # the detector contract: fit returns self, scores (N,) float64, higher = more OOD
    assert det.fit(torch.utils.data.TensorDataset(x, torch.zeros(20).long())) is det
    scores = det.score(x)
    assert scores.shape == (20,) and scores.dtype == torch.float64
    with torch.no_grad():
        expected = -3.0 * model(x).max(dim=1).values.double()
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(det.score_outputs(ModelOutputs(logits=model(x).detach())),
                               expected)
    with pytest.raises(ValueError, match="'scale' parameter of NegativeMaxLogit"):
        make_detector(name, model, scale=-1.0).fit(x)
    # a combination uses it by name like any built-in detector
    combined = make_detector("combined", model, components=(name, "msp"))
    assert list(combined._make_components()) == [name, "msp"]


def test_a_third_party_detector_must_be_a_detector(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, "dunno-test-not-a-detector", """
        [dunno.detectors]
        not-a-detector = dunno_test_not_a_detector:Thing
        """, {"dunno_test_not_a_detector": "class Thing:\n    name = 'not-a-detector'\n"})
    DETECTORS.refresh()
    try:
        with pytest.raises(PluginError, match="cannot be registered in the OOD detector "
                                              "registry: it must be a subclass of OODDetector"):
            make_detector("not-a-detector")
    finally:
        DETECTORS.refresh()


def test_a_union_reads_several_registries_as_one():
    a, b = Registry("A model"), Registry("B model")
    a.register("x", Widget)
    b.register("y", dict)
    both = Registry.union("model", a, b)
    assert both.available() == ["x", "y"] and "y" in both and "z" not in both
    assert both["x"] is Widget and both.create("y", k=1) == {"k": 1}
    b.register("z", list)  # a view, not a copy
    assert both.available() == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"^Unknown model 'w'\. Available: x, y, z\.$"):
        both.get("w")
    with pytest.raises(ValueError, match="union of others; register"):
        both.register("w", set)
    a.register("z", tuple)
    with pytest.raises(ValueError, match=r"share the name\(s\) \['z'\]"):
        both.get("x")
