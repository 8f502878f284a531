"""FlatParameters: the one-tensor clip and Adam step equal torch's own on separate parameters."""

import pytest
import torch
from torch import nn

from rlblocks.nets.flat import FlatParameters


def _nets(seed: int):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


@pytest.mark.parametrize("fused", [True, False])
def test_flat_clip_and_adam_match_torch(fused):
    ref, flat_net = _nets(0), _nets(0)
    flat = FlatParameters(flat_net.parameters())
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5, fused=fused)
    opt_flat = torch.optim.Adam([flat.param], lr=1e-2, eps=1e-5, fused=fused)
    torch.manual_seed(1)
    for step in range(5):
        x = torch.randn(16, 5) * 10  # large inputs: the gradient norm exceeds the clip, so it acts
        for net, opt in ((ref, opt_ref), (flat_net, opt_flat)):
            net.zero_grad() if net is ref else flat.zero_grad()
            net(x).square().mean().backward()
        norm_ref = nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        norm_flat = flat.clip_grad_norm_(0.5)
        torch.testing.assert_close(norm_flat, norm_ref)
        assert norm_ref > 0.5
        for group in (opt_ref.param_groups[0], opt_flat.param_groups[0]):
            group["lr"] = 1e-2 / (step + 1)  # the annealed rate is read at each step
        opt_ref.step()
        flat.adam_step(opt_flat)
        for p_ref, p_flat in zip(ref.parameters(), flat_net.parameters()):
            torch.testing.assert_close(p_flat, p_ref, rtol=1e-6, atol=1e-7)
    # The state is the optimiser's own: one step counter, moments of the flat size.
    state = opt_flat.state[flat.param]
    assert int(state["step"]) == 5 and state["exp_avg"].shape == flat.param.shape


def test_adam_step_refuses_other_optimizers():
    net = _nets(0)
    flat = FlatParameters(net.parameters())
    other = torch.optim.Adam([flat.param, nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="flat.param"):
        flat.adam_step(other)
    same_size = torch.optim.Adam([nn.Parameter(torch.zeros_like(flat.param))])  # another tensor, same shape
    with pytest.raises(ValueError, match="flat.param"):
        flat.adam_step(same_size)
