"""cnnlab's version, on the base floor so that the model card (run/contract) records it without
importing the package's root."""

VERSION = "0.1.0"
