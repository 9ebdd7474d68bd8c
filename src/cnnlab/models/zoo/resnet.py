from ..registry import register_model


@register_model("resnet-small", "ResNet-style: a 3x3 stem and residual blocks that halve the map "
                                "and double the filters")
def resnet_small() -> str:
    return ("conv(32, k=3, p=same, bias=false) bn relu resblock(32) resblock(64, s=2) "
            "resblock(128, s=2) gap dense")
