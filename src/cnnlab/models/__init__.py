"""Networks: the layer language, named networks and the classifier wrapper.

Names load on first use (PEP 562): `cnnlab.models` is also the verb listing the named networks,
and `import cnnlab` must not load torch to make it so.
"""

from ..base.lazy import lazy_names

_WHERE = {"BuiltLayer": ".build", "Network": ".build", "Classifier": ".classifier",
          "LAYERS": ".layers", "ModelEntry": ".registry", "create_model": ".registry",
          "list_models": ".registry", "register_model": ".registry", "resolve_layers": ".registry",
          "parse_spec": ".spec", "spec_to_text": ".spec"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
