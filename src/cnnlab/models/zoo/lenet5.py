from ..registry import register_model


@register_model("lenet5", "LeNet-5 (LeCun et al. 1998): tanh, average pooling, 120-84 dense head")
def lenet5() -> str:
    # p=2 on the first conv gives 28x28 inputs the 32x32 field the original was designed for.
    return ("conv(6, k=5, p=2) tanh avgpool(2) conv(16, k=5) tanh avgpool(2) "
            "flatten dense(120) tanh dense(84) tanh dense")
