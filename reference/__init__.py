"""The specification and the NumPy truth (installed as ``bnbench.reference``)."""
from .spec import (  # noqa: F401
    DTYPES, OPTIMIZERS, RUNNING_VAR_CONVENTIONS, ParameterError, Spec, SpecError, check_parameters,
    initial_parameters, layer_of, parameter_shapes, running_stat_names, state_names, trainable_names,
    weight_names,
)
from .model import BatchError, ReferenceModel, check_batch  # noqa: F401
