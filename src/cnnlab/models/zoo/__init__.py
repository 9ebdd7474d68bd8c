"""Named networks, one per file; importing this package registers them all."""

from . import lenet5, resnet, simple, vgg  # noqa: F401
