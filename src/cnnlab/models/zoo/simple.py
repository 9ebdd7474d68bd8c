from ..registry import register_model


@register_model("simple", "the classic CNN: conv-relu-pool twice, then a dense head (with batch "
                          "norm, which trains several times faster)")
def simple() -> str:
    return ("conv(32, k=3, p=same) bn relu maxpool(2) "
            "conv(64, k=3, p=same) bn relu maxpool(2) "
            "flatten dropout(0.25) dense(128) relu dense")
