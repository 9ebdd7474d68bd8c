"""The report a person reads, and the classic methods measured beside the CNN."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.baselines.classic import as_arrays, hog_features, measure_baselines
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset

from .helpers import digit_png as _digit_png
from .helpers import headless_chromium


@pytest.fixture
def run_copy(digits_run, tmp_path):
    """The digits run as training left it: without what other tests' verbs wrote into it."""
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target, ignore=shutil.ignore_patterns(
        "evaluate*", "attack*", "explain*", "baselines", "export", "report.html"))
    return target


def test_baselines_are_scikit_learns_own_numbers_on_the_same_arrays():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    results = {r.method: r for r in measure_baselines(data="digits", only="logistic,forest",
                                                      quiet=True)}
    data = load_dataset(DataConfig(name="digits"))
    (x_train, y_train), (x_test, y_test) = as_arrays(data.train), as_arrays(data.test)
    assert x_train.shape == (len(data.train), 64) and x_train.max() <= 1.0
    for name, model in (("logistic regression", LogisticRegression(max_iter=300, random_state=0)),
                        ("random forest", RandomForestClassifier(n_estimators=100, n_jobs=2,
                                                                 random_state=0))):
        predicted = model.fit(x_train, y_train).predict(x_test)
        assert results[name].accuracy == accuracy_score(y_test, predicted)
        assert results[name].macro_f1 == pytest.approx(f1_score(y_test, predicted, average="macro"))
        assert results[name].accuracy > 0.9  # digits: every classic method does well


def test_hog_features_are_scikit_images():
    from skimage.feature import hog

    pixels = np.random.default_rng(0).random((2, 28 * 28), dtype=np.float32)
    ours = hog_features(pixels, (1, 28, 28))
    theirs = hog(pixels[1].reshape(28, 28), orientations=9, pixels_per_cell=(4, 4),
                 cells_per_block=(2, 2))
    assert np.allclose(ours[1], theirs)


def test_baselines_beside_a_runs_cnn_written_as_json_and_csv(run_copy):
    result = subprocess.run([sys.executable, "-m", "cnnlab", "baselines", "--run", str(run_copy)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    written = json.loads((run_copy / "baselines" / "baselines.json").read_text())
    methods = [row["method"] for row in written["results"]]
    assert methods == ["logistic regression", "linear SVM", "random forest", "RBF SVM",
                       "CNN (simple)"]
    cnn = written["results"][-1]
    assert cnn["accuracy"] == pytest.approx(cnnlab.load(run_copy).card.test_accuracy, abs=1e-6)
    assert (run_copy / "baselines" / "baselines.csv").read_text().count("\n") == 6
    assert "RBF SVM" in result.stdout


def test_a_report_says_which_command_makes_what_it_lacks(run_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checks/digits of an earlier `cnnlab check digits` here
    path = cnnlab.report(run_copy)
    html = path.read_text()
    assert path == run_copy / "report.html"
    for command in (f"cnnlab evaluate {run_copy}", f"cnnlab attack {run_copy}",
                    f"cnnlab baselines --run {run_copy}", f"cnnlab check digits --run {run_copy}"):
        assert command in html
    # --full makes the evaluation but not a check of the data: each missing line says so
    full = "(or <code>cnnlab report RUN --full</code>)"
    assert f"cnnlab evaluate {run_copy}</code> makes it {full}" in html
    assert f"cnnlab check digits --run {run_copy}</code> makes it." in html


def _banded_folder(root: Path) -> Path:
    """8x8 gray images of three classes, each a bright band of its own, and one image of class a
    filed under b: a label error any check finds."""
    rng = np.random.default_rng(0)
    for label, name in enumerate("abc"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, (8, 8)).astype(np.uint8)
            pixels[label * 2:label * 2 + 3] = 220
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    (root / "a" / "000.png").rename(root / "b" / "from_a.png")
    return root


def _data_facts(html: str) -> dict[str, str]:
    section = html[html.index('<section id="data">'):]
    section = section[:section.index("</section>")]
    assert "Not measured yet" not in section
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", section))


def test_the_report_shows_what_a_check_of_the_runs_data_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _banded_folder(tmp_path / "bands")
    # checked by a relative name, trained on by an absolute one: the same data all the same
    result = cnnlab.check("bands", out="checked", folds=2, epochs=1, quiet=True, threads=2)
    counts, marked = result.summary["counts"], result.summary["marked_exclude"]
    assert counts["label-issue"] >= 1 and marked >= 1
    run = cnnlab.train(data=str(data), model="conv(4) relu flatten dense", epochs=1,
                       exclude="checked/check.csv", out=str(tmp_path / "run"), quiet=True)
    html = cnnlab.report(run.path).read_text()
    facts = _data_facts(html)
    assert facts["likely label errors"] == str(counts["label-issue"])
    assert facts["outliers"] == str(counts["outlier"])
    images = f"{marked} image{'s' * (marked != 1)}"
    assert facts["marked exclude"].startswith(images)
    assert facts["left out of this run"].startswith(f"{images} ({marked} train)")
    assert facts["the check"] == str(Path("checked") / "check.html")
    assert "<td>b/from_a.png</td><td>b</td><td>a</td>" in html  # the worst label issues
    assert 'alt="likely label errors' in html  # label_issues.png
    # a check of other data in the run's own folder is not taken for this one
    other = json.loads((tmp_path / "checked" / "check.json").read_text())
    (run.path / "check").mkdir()
    (run.path / "check" / "check.json").write_text(json.dumps({**other, "data": "digits"}))
    assert _data_facts(cnnlab.report(run.path).read_text())["the check"] == facts["the check"]


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_the_full_report_renders_in_a_browser_with_nothing_fetched(run_copy, tmp_path):
    explained = run_copy / "explain"
    explained.mkdir()
    shutil.copy(run_copy / "curves.png", explained / "filters.png")  # an earlier explain's figure
    result = subprocess.run([sys.executable, "-m", "cnnlab", "report", str(run_copy), "--full",
                             "--quiet"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = run_copy / "report.html"
    html = path.read_text()
    assert path.stat().st_size < 5_000_000
    # only the export and the check of the data, which --full does not run
    assert html.count("Not measured yet") == 2
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from the internet
    browser = headless_chromium()
    try:
        browser.get(path.resolve().as_uri())
        images = browser.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth, i.alt])")
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        browser.save_screenshot(str(tmp_path / "report.png"))
    finally:
        browser.quit()
    assert len(images) >= 10 and all(complete and width > 0 for complete, width, _ in images)
    assert all(name.startswith(("data:", "file:")) for name in fetched), fetched
    captions = " ".join(alt for _, _, alt in images)
    for expected in ("Grad-CAM", "saliency", "confusion matrix", "calibration", "PGD"):
        assert expected in captions


def test_train_writes_the_report_at_the_end(tmp_path):
    run = cnnlab.train(data="digits", model="conv(4) relu flatten dense", epochs=1, report=True,
                       out=str(tmp_path / "r"), quiet=True)
    assert "How training went" in (run.path / "report.html").read_text()


def test_the_report_explains_its_own_test_images_one_a_row(run_copy):
    from cnnlab.api import _fill_in_report as fill_in
    from cnnlab.explain import explain
    from cnnlab.report.build import render
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


def _baselines(accuracy: float):
    from cnnlab.baselines import BaselineResult, Baselines

    return Baselines("digits", (
        BaselineResult("logistic regression", "pixels", 0.5, 0.49, 1.0, 0.1, 100),
        BaselineResult("random forest", "pixels", accuracy, 0.8, 2.0, 0.2, 100, "a note"),
        BaselineResult("CNN (simple)", "pixels", 0.99, 0.99, 5.0, 0.3, 100, "run r")))


def test_baselines_json_reads_back_as_its_type_and_is_written_as_before(tmp_path):
    import dataclasses

    from cnnlab.base.errors import CnnlabError
    from cnnlab.baselines import Baselines

    made = _baselines(0.8123)
    written = made.write(tmp_path / "b")
    before = json.dumps({"data": "digits", "results": [dataclasses.asdict(r) for r in made]},
                        indent=2) + "\n"  # as the writer wrote it before baselines.json had a type
    assert (tmp_path / "b" / "baselines.json").read_text() == before
    read = Baselines.read(tmp_path / "b")
    assert read == written and read.folder == tmp_path / "b" and len(read) == 3
    assert read.best_classic.method == "random forest"  # the run's CNN is not a classic method
    values = json.loads(before)
    values["results"][0]["acuracy"] = 1.0
    (tmp_path / "b" / "baselines.json").write_text(json.dumps(values))
    with pytest.raises(CnnlabError, match=r"baselines.json results\[0\]: unknown field 'acuracy' "
                                          r"\(did you mean 'accuracy'\?\)"):
        Baselines.read(tmp_path / "b")


def test_the_headline_is_read_from_typed_results(run_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _baselines(0.8123).write(run_copy / "baselines")
    html = cnnlab.report(run_copy).read_text()
    shown = html[html.index('<div class="headline">'):html.index("<nav>")]
    headline = dict(re.findall(r"<div>(.*?)<b>(.*?)</b></div>", shown))
    card = cnnlab.load(run_copy).card
    assert list(headline) == ["test accuracy", "parameters", "one image",
                              "best classic: random forest"]
    assert headline["test accuracy"] == f"{card.test_accuracy:.2%}"
    assert headline["best classic: random forest"] == "81.23%"
    assert re.fullmatch(r"\d+\.\d\d ms", headline["one image"])
    assert "a note" in html  # the baselines' notes, read from the same file
