from ..registry import register_model


@register_model("vgg-small", "VGG-style: pairs of 3x3 conv-bn-relu before each 2x2 max pool")
def vgg_small() -> str:
    def stage(filters: int) -> str:
        pair = f"conv({filters}, k=3, p=same) bn relu"
        return f"{pair} {pair} maxpool(2)"

    return f"{stage(32)} {stage(64)} {stage(128)} gap dropout(0.3) dense"
