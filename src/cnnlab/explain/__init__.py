"""Explain a trained CNN: feature maps, filters, saliency, integrated gradients, Grad-CAM,
occlusion, an embedding map and the hierarchy of learned features (per depth: the patches
that excite it, pictures by optimisation, a linear probe), as arrays and as figures.

The verb is cnnlab.explain.run.explain (also `cnnlab.explain(...)`); the methods live in
attributions, maps, embedding and layers. Names load on first use (PEP 562), so `import cnnlab`
does not load torch or Captum.
"""

from ..base.lazy import lazy_names

_WHERE = {"METHODS": ".run", "Explanation": ".run", "describe_layers": ".run", "explain": ".run",
          "overlay_image": ".figures", "LayerInfo": ".layers", "list_layers": ".layers",
          "attribute": ".attributions", "HierarchyRecord": ".record", "cam_box": ".boxes",
          "box_iou": ".boxes", "receptive_fields": ".receptive", "top_patches": ".patches",
          "channel_pictures": ".visualize", "depth_probe": ".depth_probe"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
