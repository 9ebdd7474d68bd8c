from ..registry import register_model


@register_model("simple", "the classic CNN: conv-relu-pool twice, then a dense head (with batch "
                          "norm, which trains several times faster)")
def simple() -> str:
    return ("conv(32, k=3, p=same) bn relu maxpool(2) "
            "conv(64, k=3, p=same) bn relu maxpool(2) "
            "flatten dropout(0.25) dense(128) relu dense")


# The default network. The same convs as `simple`, with each max pool moved ahead of its batch
# norm and ReLU, so those run on a quarter of the values (ReLU commutes with max pooling exactly;
# normalizing after pooling is a different network, and trains as well), and dropout moved to the
# 128 hidden units, where drawing its mask costs 1/25 of drawing it for the 3136 features.
# It trains faster than `simple` (bench/train_step.py, BENCHMARKS.md).
@register_model("fast", "the default: `simple` rearranged for speed, pooling before batch norm and "
                        "ReLU, dropout on the hidden units")
def fast() -> str:
    return ("conv(32, k=3, p=same) maxpool(2) bn relu "
            "conv(64, k=3, p=same) maxpool(2) bn relu "
            "flatten dense(128) relu dropout(0.25) dense")


@register_model("fast-deep", "`fast` deepened: a second conv at 14x14 and 128 filters at 7x7; the "
                             "network of the fashion-long preset")
def fast_deep() -> str:
    return ("conv(32, k=3, p=same) maxpool(2) bn relu "
            "conv(64, k=3, p=same) bn relu "
            "conv(64, k=3, p=same) maxpool(2) bn relu "
            "conv(128, k=3, p=same) bn relu "
            "flatten dense(128) relu dropout(0.25) dense")
