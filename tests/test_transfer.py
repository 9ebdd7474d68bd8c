"""Transfer learning: a new head starts at ln K, a frozen backbone is an exact linear probe,
fine-tuning starts from that probe and keeps the pretrained batch-norm statistics, a folder of
real photos trains well above chance, --init starts a run from another run's weights, and an input
too small for a timm network is warned of."""

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.config import DataConfig, TrainConfig
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.models.pretrained import create_timm_model, stages_down_to
from cnnlab.run.folder import load_model
from cnnlab.train.loop import _check_first_loss
from cnnlab.train.optim import make_optimizer
from cnnlab.train.probe import linear_probe
from cnnlab.train.progress import Reporter
from cnnlab.train.transfer import backbone_parameters, cache_features, set_backbone_frozen

from .helpers import make_shape_folder, photo_slice, read_rows

DIGITS = {"name": "digits", "per_class": 20, "image_size": 32}
SETTINGS = dict(data=DIGITS, epochs=2, model="timm:efficientnet_lite0", pretrained=True,
                batch_size=32, quiet=True)
HEAD = "network.classifier.weight"


@pytest.fixture(scope="module")
def two_flowers(flowers12, tmp_path_factory):
    """Two species of real photos, 20 train and 10 test JPEGs each."""
    return photo_slice(flowers12, tmp_path_factory.mktemp("two"), ["daisy", "dandelion"], 20, 10)


@pytest.mark.parametrize(("model", "classes", "pretrained"), [
    ("timm:efficientnet_lite0", 2, True), ("timm:efficientnet_lite0", 12, True),
    ("timm:efficientnet_lite0", 1000, False), ("fast", 10, False), ("lenet5", 2, False)])
def test_a_new_head_starts_at_ln_k(two_flowers, model, classes, pretrained):
    data = load_dataset(DataConfig(name=str(two_flowers), image_size=224 if pretrained else 28,
                                   channels=3 if pretrained else 1))
    images, _ = next(data.train.batches(16))
    net, _, _ = create_model(model, input_shape=data.input_shape, num_classes=classes,
                             pretrained=pretrained)
    labels = torch.arange(len(images)) % classes
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(net.eval()(images.float() / 255), labels).item()
    assert loss == pytest.approx(math.log(classes), rel=0.03)


def test_a_first_loss_far_above_ln_k_is_announced():
    output = io.StringIO()
    reporter = Reporter(console=Console(file=output, width=200))
    _check_first_loss(math.log(2) * 1.1, 2, reporter)
    assert output.getvalue() == ""
    _check_first_loss(7.4, 2, reporter)
    assert "first batch's loss is 7.40, far above ln 2 = 0.69" in output.getvalue()


def test_frozen_backbone_is_unchanged_and_only_the_head_learns(tmp_path):
    run = cnnlab.train(**SETTINGS, freeze="backbone", feature_cache=False,
                       out=str(tmp_path / "frozen"))
    trained = load_file(run.path / "model.safetensors")
    reference = create_timm_model("efficientnet_lite0", num_classes=10, in_chans=1,
                                  pretrained=True).state_dict()
    for key, value in trained.items():
        if not key.startswith("network.classifier.") and key not in ("mean", "std"):
            assert torch.equal(value, reference[key.removeprefix("network.")]), key
    assert trained[HEAD].abs().sum() > 0


def test_gradients_reach_only_the_head():
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(3, 32, 32), num_classes=4,
                               pretrained=True)
    set_backbone_frozen(model, True)
    torch.nn.functional.cross_entropy(model(torch.rand(2, 3, 32, 32)),
                                      torch.tensor([0, 3])).backward()
    assert all(p.grad is None for p in backbone_parameters(model))
    assert model.network.classifier.weight.grad.abs().sum() > 0


def _features(run):
    """The run's own train and val split through its own (frozen) backbone."""
    model, _ = load_model(run.path)
    data = load_dataset(run.config.data)
    return [cache_features(model, split, torch.device("cpu"), data.input_shape)
            for split in (data.train, data.val)]


def _assert_same_head(run, probe, vectors):
    """The run's saved head and `probe` give the same probabilities on the same vectors (weakly
    penalized fits on separable vectors may differ in directions that change no prediction)."""
    state = load_file(run.path / "model.safetensors")
    features = vectors.features.double()
    saved = torch.softmax(features @ state[HEAD].double().T + state["network.classifier.bias"], 1)
    ours = torch.softmax(features @ probe.weight.T + probe.bias, 1)
    assert (saved - ours).abs().max() < 0.02


def test_frozen_backbone_fits_the_exact_probe_whatever_the_rate_and_batch(tmp_path):
    first = cnnlab.train(**SETTINGS, freeze="backbone", out=str(tmp_path / "a"))
    other = cnnlab.train(**{**SETTINGS, "batch_size": 7, "epochs": 9}, lr=1.0, freeze="backbone",
                         out=str(tmp_path / "b"))
    a, b = (load_file(run.path / "model.safetensors")[HEAD] for run in (first, other))
    assert torch.allclose(a, b, atol=1e-6)
    train, val = _features(first)
    probe = linear_probe((train.features, train.labels), (val.features, val.labels), 10)
    _assert_same_head(first, probe, train)
    assert len(read_rows(first.path / "metrics.csv")) == 1
    assert len(read_rows(first.path / "probe.csv")) == len(probe.path)
    assert cnnlab.load(first.path).card.head == f"linear probe, C={probe.c:g}"


def test_fine_tuning_starts_from_the_probe_on_the_training_split(tmp_path):
    # with a learning rate of zero nothing moves after the probe, so the saved head is the probe,
    # fitted to the smoothed loss that fine-tuning minimizes
    run = cnnlab.train(**{**SETTINGS, "epochs": 1}, lr=0.0, out=str(tmp_path / "lpft"))
    train, val = _features(run)
    probe = linear_probe((train.features, train.labels), (val.features, val.labels), 10,
                         refit=False, label_smoothing=run.config.label_smoothing)
    _assert_same_head(run, probe, train)


def _batch_norm_means(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith("running_mean")}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_fine_tuning_keeps_the_pretrained_batch_norm_statistics(tmp_path, freeze_bn):
    run = cnnlab.train(**{**SETTINGS, "epochs": 1}, freeze_bn=freeze_bn, out=str(tmp_path / "bn"))
    trained = _batch_norm_means(load_file(run.path / "model.safetensors"))
    reference = _batch_norm_means(_pretrained_digits_network())
    same = [torch.equal(value, reference[key.removeprefix("network.")])
            for key, value in trained.items()]
    assert all(same) if freeze_bn else not any(same)


def test_fine_tuning_gives_the_backbone_a_lower_rate():
    model, _, _ = create_model("timm:efficientnet_lite0", input_shape=(1, 32, 32), num_classes=3)
    config = TrainConfig(model="timm:efficientnet_lite0", pretrained=True, lr=1e-3,
                         backbone_lr=0.1)
    rates = sorted({round(group["lr"], 12) for group in make_optimizer(model, config).param_groups})
    assert rates == [pytest.approx(1e-4), pytest.approx(1e-3)]


def test_fine_tuning_with_a_frozen_first_epoch_runs(tmp_path):
    run = cnnlab.train(**SETTINGS, freeze_epochs=1, out=str(tmp_path / "fine"))
    assert run.status == "finished" and run.test_accuracy is not None
    card = cnnlab.load(run.path).card
    assert card.pretrained and card.preprocessing.interpolation == "bicubic"
    assert card.preprocessing.mean == (pytest.approx(0.5),)


def _pretrained_digits_network() -> dict:
    return create_timm_model("efficientnet_lite0", num_classes=10, in_chans=1,
                             pretrained=True).state_dict()


def test_fine_tuning_keeps_the_first_stages_as_imagenet_trained_them(tmp_path):
    run = cnnlab.train(**{**SETTINGS, "epochs": 1}, out=str(tmp_path / "kept"))
    assert run.config.freeze_stages == 4
    trained, reference = load_file(run.path / "model.safetensors"), _pretrained_digits_network()
    weights = {key.removeprefix("network."): value for key, value in trained.items()
               if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    kept = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.", "blocks.2.")
    assert all(torch.equal(value, reference[key]) for key, value in weights.items()
               if key.startswith(kept))
    later = [torch.equal(value, reference[key]) for key, value in weights.items()
             if key.startswith(("blocks.3.", "blocks.6.", "conv_head."))]
    assert later and not any(later)


@pytest.mark.parametrize(("network", "stages"), [("efficientnet_lite0", 4), ("resnet18", 3),
                                                  ("convnext_tiny", 3)])
def test_the_stages_kept_are_those_at_an_eighth_of_the_input_or_finer(network, stages):
    # timm's feature_info: lite0's blocks.2, resnet's layer2, convnext's stages.1 end at 1/8
    assert stages_down_to(network, 8) == stages


def test_freeze_stages_needs_a_trained_network_and_no_more_stages_than_it_has(tmp_path):
    with pytest.raises(CnnlabError, match="--freeze-stages keeps the first stages"):
        cnnlab.train(data=DIGITS, freeze_stages=2, epochs=1, quiet=True, out=str(tmp_path / "a"))
    with pytest.raises(CnnlabError, match="has 8 stages before its head"):
        cnnlab.train(**SETTINGS, freeze_stages=9, out=str(tmp_path / "b"))


def test_freeze_without_pretrained_is_an_error():
    with pytest.raises(CnnlabError, match="--freeze backbone keeps pretrained features"):
        cnnlab.train(data="digits", freeze="backbone", epochs=1, quiet=True)


def test_two_photo_classes_train_far_above_chance(two_flowers, tmp_path):
    # the command that once ended below chance: a frozen backbone on two classes of photos
    run = cnnlab.train(data=str(two_flowers), model="timm:efficientnet_lite0", pretrained=True,
                       freeze="backbone", epochs=10, quiet=True, out=str(tmp_path / "two"))
    assert run.test_accuracy >= 0.9


@pytest.mark.slow
def test_transfer_benchmark_runs(flowers12):
    """The benchmark is not a test; this runs it on a few photos so it cannot rot."""
    bench = Path(__file__).parent.parent / "bench" / "transfer.py"
    methods = ["fine-tuned EfficientNet-Lite0"]  # the other methods run the same code path
    result = subprocess.run([sys.executable, str(bench), "--datasets", "flowers12",
                             "--methods", ",".join(methods),
                             "--per-class", "4", "--epochs", "1", "--image-size", "64"],
                            capture_output=True, text=True, timeout=600, check=True)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in table] == methods
    assert all(0 < float(row.split("|")[-2].strip().rstrip("%")) <= 100 for row in table)


@pytest.mark.slow
def test_fine_tuning_benchmark_runs():
    """bench/fine_tune.py on 3 photos a class: both recipes' rows, each with what it ran."""
    bench = Path(__file__).parent.parent / "bench" / "fine_tune.py"
    result = subprocess.run([sys.executable, str(bench), "--per-class", "3"], capture_output=True,
                            text=True, timeout=900, check=True)
    table = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert [(row[1].strip(), row[2].strip(), row[3].strip()) for row in table] == [
        ("last round's recipe", "6", "0"), ("this round's recipe (default)", "4", "4")]
    assert all(0 < float(row[-2].strip().rstrip("%")) <= 100 for row in table)


@pytest.mark.parametrize(("asked", "used"), [(None, "bicubic"), ("bilinear", "bilinear"),
                                             ("nearest", "nearest")])
def test_a_pretrained_network_gets_its_own_resize_filter_only_where_none_was_asked(asked, used):
    from cnnlab.config import DataConfig, TrainConfig
    from cnnlab.models.pretrained import pretrained_config
    from cnnlab.train.recipes import resolve

    assert pretrained_config("efficientnet_lite0").interpolation == "bicubic"
    config = TrainConfig(model="timm:efficientnet_lite0", pretrained=True,
                         data=DataConfig(name="digits", interpolation=asked))
    assert resolve(config)[0].data.interpolation == used


def test_a_network_from_scratch_records_the_default_resize_filter():
    from cnnlab.config import DataConfig, TrainConfig
    from cnnlab.train.recipes import resolve

    resolved = resolve(TrainConfig(model="fast", data=DataConfig(name="digits")))[0]
    assert resolved.data.interpolation == "bilinear"
    assert "interpolation: bilinear" in resolved.to_yaml()


def test_init_starts_a_new_run_from_a_runs_weights(digits_run, tmp_path):
    same = cnnlab.train(data="digits", init=str(digits_run.path), epochs=1, lr=0,
                        out=str(tmp_path / "same"), quiet=True)
    # lr 0: the weights stay the run's, so the accuracy is the run's own
    assert same.test_accuracy == pytest.approx(digits_run.test_accuracy, abs=1e-9)
    make_shape_folder(tmp_path / "shapes", per_class=12)
    other = cnnlab.train(data={"name": str(tmp_path / "shapes"), "image_size": 8, "channels": 1},
                         init=str(digits_run.path), epochs=1, out=str(tmp_path / "other"),
                         quiet=True)
    assert cnnlab.load(other.path).card.class_names == ("cross", "disc", "square")


def test_an_input_too_small_for_a_timm_network_is_warned_of(tmp_path, caplog):
    cnnlab.train(data="digits", model="timm:resnet18", epochs=1, out=str(tmp_path / "r"),
                 quiet=True)
    assert "timm:resnet18 shrinks images 32 times, and these are 8x8" in caplog.text
