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

from typing import Dict, Optional

import numpy as np

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


def analytic_memory(spec: Spec, m: int) -> Dict[str, int]:
    """What a step needs at least, in bytes of the spec's dtype: the parameters and running
    statistics, the optimizer's state, the gradients, and the activations the backward pass keeps
    (each hidden layer's input, its normalised values and its ReLU's input; the output layer's
    input and the probabilities). ``minimum``: all of it; ``working``: what a step allocates beyond
    the state resident between steps (its activations and gradients), the part the CPU's resident
    reading during a burst sees."""
    size = np.dtype(spec.np_dtype).itemsize
    widths = spec.widths
    trainable = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1)) + 2 * sum(spec.hidden) + spec.n_classes
    running = 2 * sum(spec.hidden)
    optimizer = {"sgd": 0, "momentum": 1, "adam": 2}[spec.optimizer] * trainable
    activations = sum(m * widths[i] + 2 * m * widths[i + 1] for i in range(len(spec.hidden)))
    activations += m * widths[-2] + m * spec.n_classes
    return {"minimum": size * (trainable + running + optimizer + trainable + activations),
            "working": size * (activations + trainable)}


def memory_ratio(memory_bytes: Optional[int], kind: Optional[str], analytic: Dict[str, int]) -> Optional[float]:
    """A step's measured memory over the analytic figure it is comparable with: the whole minimum
    for what the model holds (``device``, ``resident``), the working part for what one burst alone
    allocated (``resident-burst``, bnbench.timing.steps.MemoryWatch); None where nothing was read."""
    if memory_bytes is None or kind not in ("device", "resident", "resident-burst"):
        return None
    return memory_bytes / analytic["working" if kind == "resident-burst" else "minimum"]
