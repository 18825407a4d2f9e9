"""Floating-point operations of one training step and one inference pass of the spec, counted
analytically (so GFLOP/s does not depend on what a framework chooses to compute).

Matmuls: forward 2*m*n_in*n_out per layer (hidden layers and the output layer); backward twice
that (dW and dA), except the first layer's dA (dX), which no framework computes.
Element-wise work, per element of a hidden layer's Z (m x n): batch norm forward 8 (mean, centre,
square, sum, normalise, scale, shift, ReLU) and backward 12; per output logit: softmax and loss
forward 5, backward 2; per parameter: sgd 2, momentum 5, adam 12. The element-wise terms are
small beside the matmuls for all but the tiny configuration.
"""
from __future__ import annotations

from bnbench.reference.spec import Spec

OPTIMIZER_FLOPS_PER_PARAMETER = {"sgd": 2, "momentum": 5, "adam": 12}


def matmul_flops(spec: Spec, m: int, *, training: bool = True) -> int:
    widths = spec.widths
    total = 0
    for layer in range(1, len(widths)):
        forward = 2 * m * widths[layer - 1] * widths[layer]
        total += forward
        if training:
            total += forward if layer == 1 else 2 * forward
    return total


def elementwise_flops(spec: Spec, m: int, *, training: bool = True) -> int:
    hidden_elements = m * sum(spec.hidden)
    logits = m * spec.n_classes
    if not training:
        return 6 * hidden_elements + 5 * logits
    n_params = sum(spec.widths[i] * spec.widths[i + 1] for i in range(len(spec.widths) - 1)) + 2 * sum(spec.hidden) + spec.n_classes
    return (8 + 12) * hidden_elements + (5 + 2) * logits + OPTIMIZER_FLOPS_PER_PARAMETER[spec.optimizer] * n_params


def step_flops(spec: Spec, m: int) -> int:
    return matmul_flops(spec, m) + elementwise_flops(spec, m)


def inference_flops(spec: Spec, m: int) -> int:
    return matmul_flops(spec, m, training=False) + elementwise_flops(spec, m, training=False)
