"""Any classifier, from any file: load it, save it, and check it against the data.

* :func:`load_any_model` -- a project checkpoint, a TorchScript file, a ``torch.export``
  program (the kind read from the file's content by :func:`detect_model_file`, never by
  running it), or ``model="package.module:factory"`` with ``weights=FILE`` from the user's own
  code (:mod:`dunno.models.factory`). What the command line's ``--checkpoint`` /
  ``--model`` / ``--weights`` options call.
* :func:`save_model` -- write any ``nn.Module`` (a user's ``nn.Sequential``, an
  :class:`~dunno.ensemble.EnsembleClassifier` of user models) as a TorchScript or
  ``torch.export`` file recording its input shape and class count.
* :func:`check_model_data` -- the input shape and class count of a model against a dataset's,
  before any work (:mod:`dunno.models.checks`).

Example::

    from dunno.models import load_any_model, save_model

    save_model(net, "net.pt2", example_input=x_train[:8])   # any nn.Module
    model = load_any_model("net.pt2")                       # no Python code of net needed
    model = load_any_model(model="mypackage.nets:build", weights="weights.pt")
"""

from dunno.models.checks import (
    check_compiled_features,
    check_input_dtype,
    check_input_scale,
    check_model_data,
    model_input_shape,
    model_kind,
)
from dunno.models.detect import MODEL_FILE_KINDS, detect_model_file
from dunno.models.factory import (
    import_factory,
    load_factory_model,
    load_state_dict_file,
    read_safetensors,
)
from dunno.models.files import (
    ExportedModel,
    load_any_model,
    load_model_file,
    read_model_metadata,
    save_model,
)

__all__ = [
    "MODEL_FILE_KINDS",
    "ExportedModel",
    "check_compiled_features",
    "check_input_dtype",
    "check_input_scale",
    "check_model_data",
    "detect_model_file",
    "import_factory",
    "load_any_model",
    "load_factory_model",
    "load_model_file",
    "load_state_dict_file",
    "model_input_shape",
    "model_kind",
    "read_model_metadata",
    "read_safetensors",
    "save_model",
]
