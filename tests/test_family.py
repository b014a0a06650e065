"""The parametric family: parameter counts known before building, separable late stages."""

import pytest
import torch

from mnistlite.models import count_params as count_built
from mnistlite.models.family import NetSpec, build, count_params, output_size

SPECS = [
    NetSpec(stages=((8, 16), (16, 16, 16)), transitions=(10,)),
    NetSpec(stages=((8, 16), (24, 24, 24, 24)), transitions=(12,), sep_stages=1),
    NetSpec(stages=((8, 16), (24, 24), (32,)), transitions=(12, 24), first_padding=1, sep_stages=2),
    NetSpec(stages=((6,), (12, 12)), transitions=(8,), sep_stages=1, bn=False, dropout=0.1),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"sep{s.sep_stages}-{len(s.stages)}stages-bn{s.bn}")
def test_count_is_exact_and_the_net_trains(spec):
    net = build(spec)
    assert count_params(spec) == count_built(net)
    x = torch.randn(4, 1, 28, 28)
    out = net(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert output_size(spec) >= 1


def test_separable_stages_use_depthwise_convs():
    net = build(SPECS[1])
    groups = [m.groups for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert groups.count(1) == 3 + 4 and sorted(set(groups)) == [1, 12, 24]


def test_the_first_stage_cannot_be_separable():
    with pytest.raises(ValueError, match="sep_stages"):
        NetSpec(stages=((8,), (16,)), transitions=(8,), sep_stages=2)


def test_names_of_plain_specs_do_not_change():
    """Run directories name family models by their JSON; the new field must not rename old specs."""
    from mnistlite.search.space import spec_name

    assert "sep_stages" not in spec_name(SPECS[0])
    assert '"sep_stages":1' in spec_name(SPECS[1])
