"""What a newcomer meets in the first hour: small data, where results land, bad values, help."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.base.config import load_config
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main

from .helpers import make_shape_folder, read_rows


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


@pytest.fixture
def run_copy(digits_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target)
    return target


def test_the_test_accuracy_is_saved_in_the_run_folder(digits_run):
    results = json.loads((digits_run.path / "results.json").read_text())
    card = json.loads((digits_run.path / "model.json").read_text())
    assert results["test_accuracy"] == pytest.approx(digits_run.test_accuracy, abs=1e-6)
    assert card["test_accuracy"] == pytest.approx(digits_run.test_accuracy, abs=1e-6)
    assert results["status"] == "finished" and results["best_epoch"] == digits_run.best_epoch
    assert oct((digits_run.path / "model.safetensors").stat().st_mode & 0o777) == \
        oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_existing_out_folder_is_kept_and_the_new_run_says_where_it_went(run_copy):
    before = sorted(p.name for p in run_copy.iterdir())
    result = _cli("train", "--data", "digits", "--model", "conv(4) relu flatten dense", "--epochs",
                  "1", "--out", str(run_copy), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"{run_copy} holds a run already: this run goes to {run_copy}-2" in result.stderr
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_other_splits_and_attacks_write_beside_the_default_results(run_copy, tmp_path):
    cnnlab.evaluate(run_copy, max_shift=1, quiet=True)
    test_metrics = (run_copy / "evaluate" / "metrics.json").read_text()
    cnnlab.evaluate(run_copy, split="val", max_shift=0, quiet=True)
    assert (run_copy / "evaluate" / "metrics.json").read_text() == test_metrics
    val = json.loads((run_copy / "evaluate-val" / "metrics.json").read_text())
    assert val["split"] == "val" and val["translation"] == []
    assert not (run_copy / "evaluate-val" / "shift.png").exists()  # --max-shift 0: no shift test
    cnnlab.attack(run_copy, eps="0,8/255", limit=20, quiet=True)
    cnnlab.attack(run_copy, method="fgsm", eps="0,0.1", limit=20, quiet=True)
    pgd = json.loads((run_copy / "attack" / "metrics.json").read_text())
    assert pgd["method"] == "pgd" and pgd["results"][1]["eps"] == pytest.approx(8 / 255)
    assert json.loads((run_copy / "attack-fgsm" / "metrics.json").read_text())["method"] == "fgsm"
    assert main(["evaluate", str(run_copy), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    assert main(["attack", str(run_copy), "--out", str(tmp_path / "at"), "--limit", "10",
                 "--quiet"]) == 0
    assert (tmp_path / "ev" / "metrics.json").is_file() and (tmp_path / "at" / "metrics.json").is_file()


def test_predict_takes_the_format_from_the_out_files_extension(digits_run, tmp_path, capsys):
    image = str(digits_run.path / "curves.png")
    assert main(["predict", str(digits_run.path), image, "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["input"] == image
    assert main(["predict", str(digits_run.path), image, "--out", str(tmp_path / "p.txt")]) == 2
    assert main(["predict", str(digits_run.path), str(tmp_path / "nothere.png")]) == 2
    err = capsys.readouterr().err
    assert "name a .json or .csv file" in err and "nothere.png: no such file or folder" in err


@pytest.mark.parametrize(("args", "message"), [
    (["attack", "RUN", "--eps", "2"], "--eps 2 is above 1: with L-inf"),
    (["models", "zzz"], "no named network matches 'zzz'"),
    (["models", "timm:zzz"], "no timm model matches 'zzz'"),
    (["explain", "RUN", "--method", "saliency,salency"], "did you mean 'saliency'"),
    (["explain", "RUN", "IMAGE", "--method", "feature-maps", "--layer", "11"],
     "outputs a vector of 128, not maps"),
    (["explain", "RUN", "IMAGE", "--method", "gradcam", "--layer", "network.head.2"],
     "outputs a vector of 128, not maps"),
    (["train", "--resume", "RUN", "--epochs", "3"], "--epochs must be more than that"),
    (["train", "--resume", "RUN", "--lr", "0.1"], "only --epochs may change"),
])
def test_bad_values_are_one_line_and_exit_2(run_copy, capsys, args, message):
    args = [str(run_copy) if a == "RUN" else str(run_copy / "curves.png") if a == "IMAGE" else a
            for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_lists_of_methods_and_layers_by_their_summary_number(run_copy, capsys):
    image = str(run_copy / "curves.png")
    assert main(["explain", str(run_copy), image, "--method", "saliency,occlusion"]) == 0
    assert main(["explain", str(run_copy), image, "--method", "feature-maps", "--layer", "5"]) == 0
    out = capsys.readouterr().out
    assert "curves-saliency.png" in out and "curves-occlusion.png" in out
    assert "feature-maps-network.features.4.png" in out  # layer 5 of `cnnlab summary simple`
    assert main(["explain", str(run_copy), "--list-layers"]) == 0
    assert "conv(64, k=3, p=same)" in capsys.readouterr().out


def test_models_lists_sizes_and_timm_models(capsys):
    assert main(["models", "res"]) == 0
    out = capsys.readouterr().out
    assert "resnet-small" in out and "308k" in out and "lenet5" not in out
    assert main(["models", "timm:resnet1*"]) == 0
    assert "resnet18*" in capsys.readouterr().out  # * marks ImageNet weights


def test_summary_fits_80_columns_and_speaks_the_layer_language(tmp_path, run_copy):
    for model in ("fast", "simple", "vgg-small", "lenet5", str(run_copy)):
        out = _cli("summary", model).stdout
        assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, model
    assert _cli("summary", str(run_copy)).stdout.startswith("simple (run run)")
    net = tmp_path / "net.yaml"
    net.write_text("layers:\n  - conv: {filters: 8, kernel: 3, padding: same}\n  - relu\n"
                   "  - flatten\n  - dense\n")
    assert "conv(8, k=3, p=same)" in _cli("summary", str(net)).stdout


def test_resume_with_more_epochs_extends_a_finished_run(run_copy):
    done = len(read_rows(run_copy / "metrics.csv"))
    result = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 2))
    assert result.returncode == 0, result.stderr
    rows = read_rows(run_copy / "metrics.csv")
    assert len(rows) == done + 2 and load_config(run_copy / "config.yaml").epochs == done + 2
    rates = [float(row["lr"]) for row in rows[done:]]
    assert rates[0] > 1e-4 and rates[-1] < rates[0]  # a schedule of their own, annealed again


def test_a_run_recorded_on_a_gpu_resumes_on_the_cpu_when_asked(run_copy):
    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    done = len(read_rows(run_copy / "metrics.csv"))
    refused = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 1))
    assert refused.returncode == 2 and "--device cpu" in refused.stderr
    result = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 1), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(read_rows(run_copy / "metrics.csv")) == done + 1


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


def test_ctrl_c_says_what_was_kept_and_how_to_go_on(tmp_path):
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", "--data", "digits",
                                "--model", "simple", "--epochs", "500", "--out", str(out)],
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               # a shell's background job ignores SIGINT; a terminal's does not
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith("epoch 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted: kept in" in err and f"cnnlab train --resume {out}" in err
    assert "Traceback" not in err


def test_train_help_groups_its_flags_and_gives_each_a_line():
    out = _cli("train", "--help").stdout
    headings = ["data:", "model:", "optimization:", "augmentation:", "transfer learning:",
                "adversarial training:", "output and machine:"]
    positions = [out.index(f"\n{heading}\n") for heading in headings]
    assert positions == sorted(positions)
    assert "DATA.NAME" not in out and "--epochs N" in out and "--init RUN" in out
    flags = [line.split()[0] for line in out.splitlines() if line.startswith("  --")]
    assert len(flags) > 40
    for line in out.splitlines():
        if line.startswith("  --") and len(line.split()) <= 2:  # flag alone: its help follows
            assert out.split(line, 1)[1].splitlines()[1].startswith(" " * 10), line


def test_an_input_too_small_for_a_timm_network_is_warned_of(tmp_path, caplog):
    cnnlab.train(data="digits", model="timm:resnet18", epochs=1, out=str(tmp_path / "r"),
                 quiet=True)
    assert "timm:resnet18 shrinks images 32 times, and these are 8x8" in caplog.text


def test_several_targets_on_one_scale(run_copy):
    from cnnlab.explain import explain

    result = explain(run_copy, str(run_copy / "curves.png"), method="saliency", target="3,8",
                     shared_scale=True, quiet=True)
    assert sorted(result.arrays) == ["curves/3", "curves/8"]
    assert sorted(path.name for path in result.figures) == ["curves-saliency-3.png",
                                                            "curves-saliency-8.png"]


def _digit_png(path, index: int = 0):
    from PIL import Image
    from sklearn.datasets import load_digits

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((load_digits().images[index] * (255 / 16)).astype("uint8")).save(path)
    return path


def test_files_of_one_name_in_other_folders_keep_figures_of_their_own(run_copy, tmp_path):
    from cnnlab.explain import explain

    first, second = _digit_png(tmp_path / "a" / "x.png", 0), _digit_png(tmp_path / "b" / "x.png", 1)
    result = explain(run_copy, [first, second, first], method="saliency", out=str(tmp_path / "out"),
                     quiet=True)
    assert [path.name for path in result.figures] == ["a_x-saliency.png", "b_x-saliency.png",
                                                      "a_x-2-saliency.png"]
    assert all(path.is_file() for path in result.figures)
    assert not (result.arrays["a_x"] == result.arrays["b_x"]).all()


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """A frozen pretrained EfficientNet-Lite0 on a few digits: a deep timm network's run. Its probe
    tries three penalties of 20 steps each: the full path takes a minute on two cores."""
    from functools import partial

    from cnnlab.train import probe, transfer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probe, "MAX_ITERATIONS", 20)
        patch.setattr(transfer, "linear_probe", partial(probe.linear_probe,
                                                        c_path=(0.1, 1.0, 10.0)))
        return cnnlab.train(data={"name": "digits", "per_class": 10, "image_size": 32},
                            model="timm:efficientnet_lite0", pretrained=True, freeze="backbone",
                            calibrate=False, log="none", quiet=True,
                            out=str(tmp_path_factory.mktemp("probe") / "run"))


def test_feature_maps_of_a_deep_network_are_a_few_spread_over_its_depth(probe_run, tmp_path,
                                                                        caplog):
    from cnnlab.explain.layers import conv_activations, list_layers

    image = str(_digit_png(tmp_path / "seven.png", 7))
    assert main(["explain", str(probe_run.path), image, "--method", "feature-maps", "--out",
                 str(tmp_path / "maps")]) == 0
    written = sorted((tmp_path / "maps").glob("seven-feature-maps-*.png"))
    assert 3 <= len(written) <= 6
    said = [r.getMessage() for r in caplog.records if "feature maps of" in r.getMessage()]
    assert len(said) == 1 and f"feature maps of {len(written)} of the " in said[0]
    shown = [path.stem.split("-feature-maps-")[1] for path in written]
    assert "--layer" in said[0] and all(name in said[0] for name in shown)
    predictor = cnnlab.load(probe_run.path)
    convs = [layer.name for layer in conv_activations(list_layers(predictor.model,
                                                                  predictor.input_shape))]
    assert len(convs) > 40 and {convs[0], convs[-1]} <= set(shown) <= set(convs)


def test_the_frozen_probe_plots_accuracy_against_the_penalty(probe_run, tmp_path):
    from cnnlab.train.frozen import edge_of_grid, probe_curves
    from cnnlab.train.probe import C_PATH, Probe, ProbeFit

    path = [ProbeFit(**{key: float(value) for key, value in row.items()} |
                     {"iterations": int(row["iterations"])})
            for row in read_rows(probe_run.path / "probe.csv")]
    head = cnnlab.load(probe_run.path).card.head
    chosen = next(fit.c for fit in path if head == f"linear probe, C={fit.c:g}")
    assert [fit.c for fit in path] == [0.1, 1.0, 10.0]
    probe_curves(path, chosen, tmp_path / "redrawn.png")  # what probe.csv holds, C on a log axis
    assert (probe_run.path / "curves.png").read_bytes() == (tmp_path / "redrawn.png").read_bytes()
    fits = [ProbeFit(c, 0.1, 1.0, 0.2, 0.9, 5) for c in C_PATH]
    assert edge_of_grid(Probe(None, None, C_PATH[3], fits)) is None
    assert "C=100, the weakest penalty tried (0.001 to 100)" in edge_of_grid(
        Probe(None, None, C_PATH[-1], fits))
    assert "strongest" in edge_of_grid(Probe(None, None, C_PATH[0], fits))
    assert edge_of_grid(Probe(None, None, 1.0, fits[:1])) is None  # no validation: no grid


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


def test_a_tensor_of_another_size_is_resized_as_an_array_is(digits_run):
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    predictor = cnnlab.load(digits_run.path)
    digit = np.kron((load_digits().images[3] * (255 / 16)).astype(np.uint8), np.ones((3, 3),
                                                                                   np.uint8))
    as_array = predictor.probabilities(predictor.preprocess(digit)[None])  # (24, 24)
    for tensor in (torch.from_numpy(digit)[None], torch.from_numpy(digit)[None].float() / 255):
        assert torch.equal(predictor.probabilities(predictor.preprocess(tensor)[None]), as_array)
    assert predictor.predict(torch.from_numpy(digit)[None])[0][0].probability == \
        pytest.approx(float(as_array.max()), abs=1e-6)
    with pytest.raises(CnnlabError, match=r"an image \(C, H, W\) with 1, 3 or 4 channels"):
        predictor.preprocess(torch.rand(5, 10, 10))


def test_config_yaml_records_the_values_used_and_runs_again(tmp_path):
    from cnnlab.base.devices import resolve_device

    first = tmp_path / "first"
    run = cnnlab.train(data="digits", model="conv(4) relu flatten dense", epochs=1,
                       out=str(first), quiet=True)
    recorded = load_config(first / "config.yaml")
    assert recorded.augment.flip is cnnlab.load(run.path).card.flip_augmented is False
    assert recorded.out == str(first) and recorded.device == resolve_device("auto").type
    again = _cli("train", "--config", str(first / "config.yaml"), "--quiet")
    assert again.returncode == 0, again.stderr
    rerun = load_config(tmp_path / "first-2" / "config.yaml")
    assert rerun.out == str(tmp_path / "first-2")
    assert rerun.to_dict() | {"out": None} == recorded.to_dict() | {"out": None}


def test_the_report_explains_its_own_test_images_one_a_row(run_copy):
    from cnnlab.explain import explain
    from cnnlab.report.build import fill_in, render
    from cnnlab.report.cost import cost
    from cnnlab.report.sections import why
    from cnnlab.run.folder import read_card

    shutil.rmtree(run_copy / "explain", ignore_errors=True)  # what other tests explained
    explain(run_copy, str(_digit_png(run_copy / "mine" / "three.png", 3)), method="gradcam",
            quiet=True)  # a person's own explanation, before the report
    for made in ("evaluate/metrics.json", "attack/metrics.json", "baselines/baselines.json",
                 "explain/filters.png", "explain/embedding-val-pca.png"):  # all but the maps
        (run_copy / made).parent.mkdir(exist_ok=True)
        shutil.copy(run_copy / "curves.png", run_copy / made)
    fill_in(run_copy, quiet=True)
    for stand_in in ("evaluate", "attack", "baselines"):
        shutil.rmtree(run_copy / stand_in)
    section = why(run_copy)
    captions = [figure.caption for figure in section.figures]
    assert captions[:4] == [f"Grad-CAM: test image {n} (one per class)" for n in range(1, 5)]
    assert "embedding of the penultimate layer (val split, PCA)" in captions
    assert not any("three" in caption for caption in captions)
    spent = dict(cost(run_copy, read_card(run_copy)).facts)
    assert "batch of 1" in spent["latency, one image"] and "batches of 64" in spent["throughput"]
    html = render(run_copy, [section, cost(run_copy, read_card(run_copy))])
    assert '<div class="figures one-a-row">' in html


def test_the_readme_gives_fine_tunings_peak_memory_and_how_to_lower_it():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    after_the_recipe = readme[readme.index("**The fine-tuning recipe**"):].split("\n\n")[1]
    assert after_the_recipe.startswith("**Memory.**")
    assert re.search(r"peaks at \d+(\.\d+)? GiB", after_the_recipe)
    assert "--batch-size" in after_the_recipe and "--image-size" in after_the_recipe


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
