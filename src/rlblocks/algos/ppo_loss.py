"""PPO's clipped surrogate and clipped value loss as one autograd node.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv 1707.06347: Eq. 7 (the
clipped surrogate) and Eq. 9's value term, with the value clipping of OpenAI baselines ``ppo2``
(Dhariwal et al. 2017). Written with autograd, these two terms are ~25 elementwise ops forward
and ~35 backward on ``[B]`` vectors; at PPO's minibatch sizes on CPU each op is dispatch
overhead, and together they cost more than the two networks' matmuls. Here the forward pass
also computes the (piecewise-linear) gradients in closed form, so backward is two products:

* policy: ``L^CLIP = mean_i max(-A_i r_i, -A_i clip(r_i, 1-eps, 1+eps))`` with
  ``r_i = exp(log pi(a_i|s_i) - log pi_old(a_i|s_i))``;
  ``dL^CLIP / d log pi_i = -A_i r_i / B`` where the unclipped term is the larger (ties included:
  a tie inside the clip range is the unclipped term; outside it, ``A_i = 0``), else 0.
* value: ``L^VF = ½ mean_i max((V_i - R_i)^2, (V^clip_i - R_i)^2)`` with
  ``V^clip_i = V^old_i + clip(V_i - V^old_i, -eps, eps)``;
  ``dL^VF / dV_i = (V_i - R_i) / B`` where the unclipped error is the larger, else
  ``(V^clip_i - R_i) / B`` inside the clip range and 0 outside it.

``tests/test_ppo.py`` checks values and gradients against the same loss written with autograd.
"""

from __future__ import annotations

import torch


class _ClippedPPOLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_prob, value, old_log_prob, old_value, advantage, ret, clip: float, vf_coef: float,
                clip_value: bool):
        n = log_prob.shape[0]
        log_ratio = log_prob - old_log_prob
        ratio = log_ratio.exp()
        surrogate = -advantage * ratio
        surrogate_clipped = -advantage * ratio.clamp(1.0 - clip, 1.0 + clip)
        unclipped = surrogate >= surrogate_clipped
        policy_loss = torch.where(unclipped, surrogate, surrogate_clipped).mean()
        grad_log_prob = surrogate.mul_(unclipped).div_(n)  # -A r / B where unclipped, else 0

        error = value - ret
        if clip_value:
            delta = value - old_value
            in_range = delta.abs() <= clip
            error_clipped = delta.clamp_(-clip, clip).add_(old_value).sub_(ret)
            larger_unclipped = error.abs() >= error_clipped.abs()
            value_loss = 0.5 * torch.where(larger_unclipped, error, error_clipped).square().mean()
            grad_value = torch.where(larger_unclipped, error, error_clipped.mul_(in_range))
        else:
            value_loss = 0.5 * error.square().mean()
            grad_value = error
        grad_value = grad_value.mul_(vf_coef / n)
        ctx.save_for_backward(grad_log_prob, grad_value)
        ctx.mark_non_differentiable(policy_loss, value_loss, log_ratio)
        return policy_loss + vf_coef * value_loss, policy_loss, value_loss, log_ratio

    @staticmethod
    def backward(ctx, grad_loss, _grad_policy, _grad_value, _grad_log_ratio):
        grad_log_prob, grad_value = ctx.saved_tensors
        return grad_log_prob * grad_loss, grad_value * grad_loss, None, None, None, None, None, None, None


def clipped_ppo_loss(log_prob: torch.Tensor, value: torch.Tensor, old_log_prob: torch.Tensor,
                     old_value: torch.Tensor, advantage: torch.Tensor, ret: torch.Tensor, clip: float,
                     vf_coef: float, clip_value: bool = True):
    """``-L^CLIP + vf_coef * L^VF`` of one minibatch (see the module docstring for the formulas).

    Args:
        log_prob, value: ``[B]``, the current policy's ``log pi(a|s)`` and ``V(s)`` (with grad).
        old_log_prob, old_value: ``[B]``, the same at collection time.
        advantage: ``[B]``, already normalised if the caller normalises.
        ret: ``[B]``, the value targets (GAE lambda-returns).
        clip: the clip range ``eps`` of the ratio and of the value change.
        vf_coef: the value loss coefficient ``c1``.
        clip_value: clip the value change as baselines ``ppo2``; else ``L^VF = ½ mean (V - R)^2``.

    Returns:
        ``(loss, policy_loss, value_loss, log_ratio)``: the scalar to minimise (differentiable in
        ``log_prob`` and ``value``), ``-L^CLIP`` and ``L^VF`` (scalars), and ``log r`` ``[B]``,
        the last three without gradient.
    """
    return _ClippedPPOLoss.apply(log_prob, value, old_log_prob, old_value, advantage, ret, clip, vf_coef, clip_value)
