"""FlatParameters: the one-tensor clip and Adam step equal torch's own on separate parameters, on
this torch and through the functional-Adam signature of torch 2.4-2.6."""

import pytest
import torch
from torch import nn

from rlblocks.nets import flat as flat_module
from rlblocks.nets.flat import FlatParameters, accepts_keyword


def _nets(seed: int):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


@pytest.mark.parametrize("fused", [True, False])
def test_flat_clip_and_adam_match_torch(fused):
    _clip_and_step_match_torch(torch.optim.Adam, lr=1e-2, eps=1e-5, fused=fused)


def _clip_and_step_match_torch(optimizer_cls, **kwargs):
    """Five clipped steps of ``optimizer_cls(**kwargs)`` on separate parameters and through the flat
    tensor, with an annealed learning rate, give the same parameters."""
    ref, flat_net = _nets(0), _nets(0)
    flat = FlatParameters(flat_net.parameters())
    opt_ref = optimizer_cls(ref.parameters(), **kwargs)
    opt_flat = optimizer_cls([flat.param], **kwargs)
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


def test_flat_adam_with_weight_decay_matches_torch():
    _clip_and_step_match_torch(torch.optim.Adam, lr=1e-2, eps=1e-5, weight_decay=0.1, fused=True)


@pytest.mark.skipif(not flat_module._ADAM_DECOUPLED_WEIGHT_DECAY, reason="AdamW is Adam's flag from torch 2.7")
def test_flat_adamw_matches_torch():
    """From torch 2.7 AdamW is an Adam with ``decoupled_weight_decay``: the flag must reach the kernel."""
    _clip_and_step_match_torch(torch.optim.AdamW, lr=1e-2, eps=1e-5, weight_decay=0.1, fused=True)


def _adam_before_2_7(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, foreach=None,
                     capturable=False, differentiable=False, fused=None, grad_scale=None, found_inf=None,
                     has_complex=False, *, amsgrad, beta1, beta2, lr, weight_decay, eps, maximize):
    """``torch.optim.adam.adam``'s signature in torch 2.4.1 and 2.6.0 (read from their wheels), forwarding
    to the installed one: no ``decoupled_weight_decay``."""
    _adam_before_2_7.calls += 1
    _REAL_ADAM(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, foreach=foreach,
               capturable=capturable, differentiable=differentiable, fused=fused, grad_scale=grad_scale,
               found_inf=found_inf, has_complex=has_complex, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
               weight_decay=weight_decay, eps=eps, maximize=maximize)


_REAL_ADAM = flat_module.adam
_adam_before_2_7.calls = 0


def test_keyword_detection_reads_the_signature():
    assert not accepts_keyword(_adam_before_2_7, "decoupled_weight_decay")
    assert accepts_keyword(_adam_before_2_7, "fused")
    installed = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert flat_module._ADAM_DECOUPLED_WEIGHT_DECAY == (installed >= (2, 7))


@pytest.mark.parametrize("fused", [True, False])
def test_flat_adam_through_the_functional_signature_of_torch_2_4(fused, monkeypatch):
    """With the functional adam of torch 2.4-2.6 (no ``decoupled_weight_decay``, which it would reject
    with a TypeError) and the detection made on it, the flat step still equals torch.optim.Adam's."""
    monkeypatch.setattr(flat_module, "adam", _adam_before_2_7)
    monkeypatch.setattr(flat_module, "_ADAM_DECOUPLED_WEIGHT_DECAY", accepts_keyword(_adam_before_2_7,
                                                                                    "decoupled_weight_decay"))
    _adam_before_2_7.calls = 0
    _clip_and_step_match_torch(torch.optim.Adam, lr=1e-2, eps=1e-5, fused=fused)
    assert _adam_before_2_7.calls == 4  # every step but the first, which creates the state via step()


def test_adam_step_refuses_optimizers_that_are_not_adam():
    """Another optimiser class (such as AdamW before torch 2.7, whose decoupled decay the functional
    adam would not apply) is refused, not silently stepped as Adam."""
    net = _nets(0)
    flat = FlatParameters(net.parameters())
    not_adam = torch.optim.SGD([flat.param], lr=0.1)
    with pytest.raises(ValueError, match="Adam optimizer"):
        flat.adam_step(not_adam)
