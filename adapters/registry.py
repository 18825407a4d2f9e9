"""Which adapters exist, found without importing any framework.

Adapter modules import their framework lazily, so importing an adapter class is cheap; only
``import_error()`` (and bnbench.frameworks.describe(probe=True)) actually import a framework.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Type

from .base import Adapter

# name -> "module:Class". Order is the order of tables and listings.
ADAPTERS: Dict[str, str] = {
    "numpy": "bnbench.adapters.numpy_adapter:NumpyAdapter",
    "torch": "bnbench.adapters.torch_adapter:TorchAdapter",
    "tensorflow": "bnbench.adapters.tensorflow_adapter:TensorflowAdapter",
    "jax": "bnbench.adapters.jax_adapter:JaxAdapter",
    "mxnet": "bnbench.adapters.mxnet_adapter:MxnetAdapter",
    "keras-jax": "bnbench.adapters.keras_adapter:KerasJaxAdapter",
    "keras-tensorflow": "bnbench.adapters.keras_adapter:KerasTensorflowAdapter",
    "keras-torch": "bnbench.adapters.keras_adapter:KerasTorchAdapter",
    "paddle": "bnbench.adapters.paddle_adapter:PaddleAdapter",
    "pytensor": "bnbench.adapters.pytensor_adapter:PytensorAdapter",
    "theano": "bnbench.adapters.theano_adapter:TheanoAdapter",
    "chainer": "bnbench.adapters.chainer_adapter:ChainerAdapter",
    "lasagne": "bnbench.adapters.lasagne_adapter:LasagneAdapter",
    "caffe": "bnbench.adapters.caffe_adapter:CaffeAdapter",
    # the lecture's frameworks that cannot run here: rows with the measured reason
    "caffe2": "bnbench.adapters.unavailable:Caffe2Adapter",
    "cntk": "bnbench.adapters.unavailable:CntkAdapter",
    "dl4j": "bnbench.adapters.unavailable:Dl4jAdapter",
}


class UnknownFramework(KeyError):
    def __str__(self) -> str:
        return f"unknown framework {self.args[0]!r}; known: {', '.join(ADAPTERS)}"


def names() -> List[str]:
    return list(ADAPTERS)


def local_class(name: str) -> Type[Adapter]:
    """The adapter class itself, to run in this process."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise UnknownFramework(name) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
