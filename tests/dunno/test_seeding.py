"""dunno.seeding: one reading of seed= / generator= for every sampler."""

from __future__ import annotations

import pytest
import torch

from dunno.seeding import make_generator, sampling_rng


def test_make_generator():
    assert make_generator(owner="X.sample") is None
    g = torch.Generator().manual_seed(1)
    assert make_generator(generator=g, owner="X.sample") is g
    a = torch.rand(3, generator=make_generator(7, owner="X.sample"))
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(7)))


def test_sampling_rng_seeds_and_restores_the_global_generator():
    state = torch.random.get_rng_state()
    with sampling_rng(4, owner="X.sample"):
        a = torch.rand(3)
    with sampling_rng(4, owner="X.sample"):
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(state, torch.random.get_rng_state())
    g = torch.Generator().manual_seed(2)
    with sampling_rng(generator=g, owner="X.sample"):
        b = torch.rand(3)
    with sampling_rng(generator=torch.Generator().manual_seed(2), owner="X.sample"):
        assert torch.equal(torch.rand(3), b)
    with sampling_rng(owner="X.sample"):  # neither: the global generator, advanced as usual
        torch.rand(1)
    assert not torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": 1, "generator": torch.Generator()},
     "Pass either 'seed' or 'generator' to X.sample, not both. Got seed=1 and a generator."),
    ({"seed": -1}, "The 'seed' parameter of X.sample must be an int >= 0. Got -1 instead."),
    ({"seed": 1.5}, "The 'seed' parameter of X.sample must be an int >= 0. Got 1.5 instead."),
    ({"generator": 3}, "The 'generator' argument of X.sample must be a torch.Generator. Got int "
                       "instead."),
])
def test_bad_seeds_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        make_generator(**kwargs, owner="X.sample")
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        with sampling_rng(**kwargs, owner="X.sample"):
            pass
