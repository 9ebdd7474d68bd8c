"""`cnnlab explain RUN --method hierarchy` as a verb: the record and figures it writes, what the
terminal and the report show of it, and its errors. The pieces (receptive fields and patches,
pictures by optimisation, the depth probe, Grad-CAM boxes) have test files of their own."""

import shutil
import subprocess
import sys

import pytest
import torch

import cnnlab
from cnnlab.explain import HierarchyRecord, cam_box

from .helpers import make_shape_folder


@pytest.fixture(scope="module")
def hierarchy_run(digits_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("hierarchy") / "run"
    shutil.copytree(digits_run.path, run)
    return run, cnnlab.explain(run, method="hierarchy", limit=400, quiet=True)


def test_the_record_holds_each_depth_and_reads_back(hierarchy_run):
    run, result = hierarchy_run
    folder = run / "explain" / "hierarchy"
    record = HierarchyRecord.read(folder)
    assert result.hierarchy is not None
    assert record.depths == result.hierarchy.depths and record.probe == result.hierarchy.probe
    assert record.images == 400
    assert [path.name for path in result.figures] == list(record.figures)
    assert all((folder / name).is_file() for name in record.figures)
    # deeper layers see more of the image, and the shown depths come in forward order
    fields = [depth.receptive_field for depth in record.depths]
    assert len(fields) >= 2 and fields == sorted(fields) and fields[0] < fields[-1]
    for depth in record.depths:
        assert depth.channels and all(len(c.top_images) >= 1 for c in depth.channels)
        means = [channel.mean_activation for channel in depth.channels]
        assert means == sorted(means, reverse=True)  # the strongest channels, strongest first


def test_the_probe_knows_more_of_the_classes_at_depth(hierarchy_run):
    _, result = hierarchy_run
    curve = result.hierarchy.probe_of("this run")
    assert len(curve) >= 3 and curve[-1].layer == "penultimate"
    assert curve[-1].val_accuracy > curve[0].val_accuracy
    assert curve[-1].val_accuracy > 0.8  # the trained digits model's own features
    assert list(result.arrays["probe/this run"]) == pytest.approx([p.val_accuracy for p in curve],
                                                                  abs=1e-6)
    assert "pretrained, before fine-tuning" not in {p.network for p in result.hierarchy.probe}


def test_the_terminal_and_the_report_show_the_hierarchy(hierarchy_run):
    run, result = hierarchy_run
    shown = subprocess.run([sys.executable, "-m", "cnnlab", "explain", str(run), "--method",
                            "hierarchy", "--limit", "300", "--out", str(run / "again")],
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert "linear probe on each depth" in shown.stdout and "receptive field" in shown.stdout
    assert (run / "again" / "hierarchy" / "hierarchy.json").is_file()
    html = cnnlab.report(run).read_text()
    section = html[html.index('<section id="hierarchy">'):]
    section = section[:section.index("</section>")]
    assert "Not measured yet" not in section
    assert "what each depth knows of the classes" in section
    last = result.hierarchy.probe_of("this run")[-1]
    assert f"{last.val_accuracy:.2%}" in section


def test_gradcam_returns_and_draws_the_box_where_the_object_is(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    image = torch.from_numpy(load_digits().images[3] / 16).float()[None]  # (1, 8, 8) in [0, 1]
    result = cnnlab.explain(digits_run.path, [image, image], method="gradcam,saliency",
                            out=str(tmp_path))
    gradcam = result.parts[0]
    assert set(gradcam.boxes) == {"image0", "image1"}
    for key, box in gradcam.boxes.items():
        assert box == cam_box(gradcam.arrays[key])
        top, left, height, width = box
        assert top >= 0 and left >= 0 and height >= 1 and width >= 1
        assert top + height <= 8 and left + width <= 8
    assert not result.parts[1].boxes  # saliency has no box of its own


def test_a_report_without_it_names_the_command(run_copy):
    html = cnnlab.report(run_copy).read_text()
    assert f"cnnlab explain {run_copy} --method hierarchy</code> makes it" in html


def test_without_a_validation_split_the_rest_is_shown_and_the_probe_said_missing(tmp_path):
    make_shape_folder(tmp_path / "data", per_class=20)
    run = cnnlab.train(data={"name": str(tmp_path / "data"), "val_fraction": 0}, model="simple",
                       epochs=1, out=str(tmp_path / "run"), quiet=True)
    result = subprocess.run([sys.executable, "-m", "cnnlab", "explain", str(run.path),
                             "--method", "hierarchy", "--quiet"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "no validation split, so no depth probe" in result.stderr
    record = HierarchyRecord.read(run.path / "explain" / "hierarchy")
    assert record.probe == () and record.depths and "depth-probe.png" not in record.figures
