"""`cnnlab check`: label issues against cleanlab itself and against known flips, out-of-sample
probabilities, leaks of modified test photos, the page in a browser, bad input, and --exclude."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageOps

import cnnlab
from cnnlab.check import embed
from cnnlab.check import labels as check_labels
from cnnlab.check.findings import CheckResult, Finding
from cnnlab.check.labels import out_of_sample_probabilities, probe_model
from cnnlab.check.scan import Items
from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset

from .helpers import error_line, headless_chromium, photo_slice, read_rows, run_cnnlab

CLASSES = ["bluebell", "buttercup", "daisy", "iris", "pansy", "sunflower"]
FLIPS, LEAKS = 12, 5


def _flip_labels(root: Path, count: int, seed: int) -> dict[str, str]:
    """Move `count` training photos into another class's folder; returns new path -> true class."""
    rng = np.random.default_rng(seed)
    photos = sorted((root / "train").glob("*/*.jpg"))
    moved = {}
    for index in rng.choice(len(photos), count, replace=False):
        photo = photos[index]
        wrong = rng.choice([c for c in CLASSES if c != photo.parent.name])
        target = root / "train" / wrong / photo.name
        photo.rename(target)
        moved[f"train/{wrong}/{photo.name}"] = photo.parent.name
    return moved


def leaked_copy(photo: Path, target: Path) -> None:
    """A test photo as it leaks: mirrored, scaled to 0.9, re-encoded as JPEG at quality 75."""
    image = ImageOps.mirror(Image.open(photo).convert("RGB"))
    image = image.resize((round(image.width * 0.9), round(image.height * 0.9)),
                         Image.Resampling.BICUBIC)
    image.save(target, quality=75)


def _leak(root: Path, count: int) -> dict[str, str]:
    """Copies of the first test photos of some classes put into train; copy -> original."""
    leaked = {}
    for name in CLASSES[:count]:
        photo = sorted((root / "test" / name).iterdir())[0]
        copy = root / "train" / name / f"leak_{photo.name}"
        leaked_copy(photo.resolve(), copy)
        leaked[f"train/{name}/{copy.name}"] = f"test/{name}/{photo.name}"
    return leaked


@pytest.fixture(scope="module")
def checked(flowers12, tmp_path_factory):
    """A flowers12 slice (6 classes, 20 train and 5 test photos each) with 12 labels moved to
    another class and 5 test photos leaked into train, checked once."""
    root = photo_slice(flowers12, tmp_path_factory.mktemp("data") / "flowers", CLASSES, 20, 5)
    flips = _flip_labels(root, FLIPS, seed=0)
    leaks = _leak(root, LEAKS)
    out = tmp_path_factory.mktemp("check")
    result = cnnlab.check(root, out=str(out), quiet=True, threads=2)
    return result, out, flips, leaks, root


def test_flagged_set_is_cleanlabs_on_the_same_probabilities(checked):
    from cleanlab.filter import find_label_issues

    result = checked[0]
    given = result.items.labels[result.pool]
    direct = find_label_issues(given, result.issues.probabilities)
    assert np.array_equal(direct, result.issues.flagged)
    rows = [r for r in read_rows(checked[1] / "check.csv") if r["kind"] == "label-issue"]
    assert {r["file"] for r in rows} == {result.items.names[i]
                                         for i in result.pool[np.flatnonzero(direct)]}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)  # worst first


def test_moved_labels_are_flagged(checked):
    result, out, flips, _, _ = checked
    rows = {r["file"]: r for r in read_rows(out / "check.csv") if r["kind"] == "label-issue"}
    found = [name for name in flips if name in rows]
    # 20 photos a class leave 16 per class and fold to learn from: confident learning flags
    # two thirds of the flips here, every one of them a flip (the whole of flowers12: BENCHMARKS.md)
    assert len(found) >= 0.6 * FLIPS, (found, list(rows))
    assert len(found) >= 0.8 * len(rows)  # precision
    assert sum(rows[name]["suggested"] == flips[name] for name in found) >= 0.75 * len(found)
    # and the label quality ranks the flips first
    given = result.items.labels[result.pool]
    worst = np.argsort(result.issues.quality)[:FLIPS]
    assert sum(result.items.names[result.pool[k]] in flips for k in worst) >= 0.8 * FLIPS
    assert len(given) == len(result.issues.quality)


def test_leaked_copies_are_found_as_leaks(checked):
    _, out, _, leaks, _ = checked
    pairs = {(r["file"], r["other_file"]) for r in read_rows(out / "check.csv") if r["kind"] == "leak"}
    assert set(leaks.items()) <= pairs


def test_the_worst_label_issues_are_drawn_in_one_figure(checked):
    result, out = checked[:2]
    figure = out / "label_issues.png"
    with Image.open(figure) as image:
        assert image.format == "PNG" and 800 <= image.width <= 3000, image.size
    assert 20_000 < figure.stat().st_size < 5_000_000
    assert 'href="label_issues.png"' in (out / "check.html").read_text()


def _tiny_gray_issues(count: int) -> CheckResult:
    """A built-in set's kind of result without a check run: `count` 28x28 gray images (a
    checkerboard of 4-pixel squares), each a label issue."""
    squares = (np.indices((28, 28)) // 4).sum(0) % 2 * 200 + 30
    tensors = torch.from_numpy(np.broadcast_to(squares, (count, 1, 28, 28)).astype(np.uint8).copy())
    names = [f"train:{i}" for i in range(count)]
    items = Items(names, [None] * count, np.full(count, "train"), np.zeros(count, np.int64),
                  ["zero", "one"], "tiny", tensors)
    findings = [Finding("label-issue", name, "train", "zero", suggested="one", score=i / 100,
                        index=i) for i, name in enumerate(names)]
    return CheckResult("tiny", items, None, findings, {"counts": {"label-issue": count}},
                       np.arange(count), None)


def test_the_label_issue_figure_keeps_gray_images_gray_and_shows_the_worst_24():
    from cnnlab.check.figure import SHOWN, label_issues_figure

    drawn = Image.open(io.BytesIO(label_issues_figure(_tiny_gray_issues(30))))
    pixels = np.asarray(drawn.convert("RGB")).astype(int)
    # gray images, black text, a white ground: no colour map turned the gray into colours
    assert (np.ptp(pixels, axis=2) <= 2).mean() > 0.999
    # both levels of the checkerboard drawn as they are (not stretched to black and white)
    levels = np.bincount(pixels[..., 0].ravel(), minlength=256)
    assert levels[30] > 1000 and levels[230] > 1000
    assert SHOWN == 24 and label_issues_figure(_tiny_gray_issues(0)) is None


def test_out_of_sample_probabilities_never_come_from_a_model_that_saw_the_image():
    """Every image carries a feature of its own (a one-hot of its index) and a random label: a
    model that saw the image learns its label from that feature, one that did not can only guess."""
    rng = np.random.default_rng(0)
    count, classes = 240, 4
    labels = rng.integers(0, classes, count)
    features = torch.from_numpy(np.hstack([rng.normal(size=(count, 8)), 5 * np.eye(count)]))
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    fit = probe_model(features, labels, classes)

    def recording(train_index, held_out):
        seen.append((train_index, held_out))
        return fit(train_index, held_out)

    probabilities = out_of_sample_probabilities(labels, classes, 4, 0, recording)
    assert all(not set(train) & set(held) for train, held in seen)
    assert sorted(np.concatenate([held for _, held in seen])) == list(range(count))
    out_of_sample = (probabilities.argmax(1) == labels).mean()
    in_sample = (fit(np.arange(count), np.arange(count)).argmax(1) == labels).mean()
    assert in_sample > 0.95 and out_of_sample < 0.45  # chance is 0.25


def test_page_opens_in_chromium_with_every_thumbnail_inline(checked):
    path = checked[1] / "check.html"
    html = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    browser = headless_chromium()
    try:
        browser.get(path.resolve().as_uri())
        images = browser.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth])")
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        headings = browser.execute_script(
            "return [...document.querySelectorAll('h2')].map(h => h.textContent)")
    finally:
        browser.quit()
    assert len(images) >= 2 * LEAKS and all(done and width > 0 for done, width in images)
    assert all(name.startswith(("data:", "file:")) for name in fetched), fetched
    assert any(h.startswith("Likely label errors") for h in headings)
    assert any(h.startswith("Leaks") for h in headings)


def test_exclude_drops_the_marked_files_and_records_the_list(checked):
    result, out, _, leaks, root = checked
    marked = {r["file"] for r in read_rows(out / "check.csv") if r["exclude"] == "yes"}
    assert set(leaks) <= marked
    config = DataConfig(name=str(root), exclude=str(out / "check.csv"), val_fraction=0, stream=True)
    data = load_dataset(config)
    kept = {p.resolve() for p in data.train.paths} | {p.resolve() for p in data.test.paths}
    assert not kept & {(root / name).resolve() for name in marked}
    assert len(data.train) + len(data.test) == len(result.items) - len(marked)
    assert config.exclude_sha256 and len(config.exclude_sha256) == 64


def _gray_folder(root: Path, per_class: dict[str, int], side: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for label, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (side, side)).astype(np.uint8)
            pixels[label * 2:label * 2 + 3] = 220  # each class: a bright band of its own
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert re.search(expected, err), err


def test_bad_input_gets_one_line_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["check", str(tmp_path / "empty"), "--out", str(out)], "no class folders")
    one = _gray_folder(tmp_path / "one", {"a": 6})
    _one_line_error(capsys, ["check", str(one), "--out", str(out)], "only the class")
    single = _gray_folder(tmp_path / "single", {"a": 6, "b": 1})
    _one_line_error(capsys, ["check", str(single), "--out", str(out), "--quiet"],
                    "class 'b' has 1 training image")
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    _one_line_error(capsys, ["check", str(single), "--out", str(mine)], "holds files and no check.json")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_few_images_in_a_class_mean_fewer_folds(tmp_path):
    data = _gray_folder(tmp_path / "few", {"a": 12, "b": 3, "c": 12})
    out = tmp_path / "out"
    out.mkdir()
    (out / "check.json").write_text("{}")
    (out / "label_issues.png").write_bytes(b"an earlier check's figure")
    result = cnnlab.check(data, out=str(out), folds=5, quiet=True, threads=2)
    assert result.summary["folds"] == 3 and "class 'b' has 3" in result.summary["folds_note"]
    # no label issues here: no figure of them, and not the earlier check's either
    assert result.summary["counts"]["label-issue"] == 0
    assert {p.name for p in out.iterdir()} == {"check.json", "check.csv", "check.html"}


def test_train_exclude_leaves_the_files_out_and_says_unknown_names(tmp_path, capsys):
    data = _gray_folder(tmp_path / "data", {"a": 10, "b": 10})
    listed = tmp_path / "drop.txt"
    listed.write_text("a/000.png\n# a comment\nb/003.png\n")
    run = cnnlab.train(data=str(data), model="conv(4) relu flatten dense", epochs=1,
                       exclude=str(listed), val_fraction=0.2, out=str(tmp_path / "run"), quiet=True)
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["data"]["exclude"] == str(listed)
    assert len(config["data"]["exclude_sha256"]) == 64
    card_file = run.path / "model.json"
    card = json.loads(card_file.read_text())
    assert card["excluded"] == {"train": 2}  # a folder without train/ and test/: all is train
    del card["excluded"]  # as a run made before the card counted them
    card_file.write_text(json.dumps(card))
    assert cnnlab.load(run.path).card.excluded == {}
    data_splits = load_dataset(DataConfig(name=str(data), exclude=str(listed), val_fraction=0))
    assert len(data_splits.train) == 18
    listed.write_text("a/000.png\nnot/there.png\nnor/this.png\n")
    _one_line_error(capsys, ["train", "--data", str(data), "--exclude", str(listed), "--epochs", "1",
                             "--out", str(tmp_path / "run2")], r"2 of its 3 names are not images")
    assert not (tmp_path / "run2").exists()


def test_the_model_card_counts_what_exclude_left_out_of_each_split(tmp_path):
    listed = tmp_path / "drop.txt"
    listed.write_text("train:0\ntrain:5\ntrain:9\ntest:3\n")
    run = cnnlab.train(data="digits", model="conv(4) relu flatten dense", epochs=1,
                       exclude=str(listed), out=str(tmp_path / "run"), quiet=True)
    assert json.loads((run.path / "model.json").read_text())["excluded"] == {"train": 3, "test": 1}
    assert cnnlab.load(run.path).card.excluded == {"train": 3, "test": 1}


def _copies(result: CheckResult) -> set[tuple[str, str, str]]:
    return {(f.kind, f.file, f.other_file) for f in result.findings if f.kind in ("leak", "duplicate")}


def _knows_every_label(images, given, count, *_):
    return lambda _train, held_out: np.eye(count)[given[held_out]]


def test_a_check_with_a_run_finds_copies_in_the_pixels_and_labels_in_the_runs_features(
        digits_run, tmp_path, monkeypatch):
    """A trained network pulls each class together (on this run a fifth of the pairs within a
    class are past 0.97 cosine), so with --run copies are found as in a check of the data alone."""
    fast = {"folds": 2, "quiet": True, "threads": 2}
    with_run = cnnlab.check(run=str(digits_run.path), out=str(tmp_path / "with_run"), **fast)
    # without --run the label model is a CNN per fold, beside the point here and most of the time
    monkeypatch.setattr(check_labels, "cnn_model", _knows_every_label)
    alone = cnnlab.check("digits", out=str(tmp_path / "alone"), **fast)
    assert _copies(alone) and _copies(with_run) == _copies(alone)
    assert with_run.summary["duplicate_pairs"] == alone.summary["duplicate_pairs"]
    assert with_run.summary["copies_embedding"] == alone.summary["embedding"] == "pixels (1x8x8)"
    assert str(digits_run.path) in with_run.summary["embedding"]
    # the label issues still come from the linear probe on the run's features, fold by fold
    cpu = torch.device("cpu")
    features = embed.run_embedder(digits_run.path, cpu)(with_run.items.tensors[with_run.pool], cpu)
    given = with_run.items.labels[with_run.pool]
    count = len(with_run.items.class_names)
    expected = out_of_sample_probabilities(given, count, 2, 0, probe_model(features, given, count))
    assert np.allclose(with_run.issues.probabilities, expected, atol=1e-3)


def test_look_alike_small_images_in_a_folder_are_not_copies_and_a_copy_is(tmp_path, monkeypatch):
    """Fashion-MNIST trousers share their 8x8 difference hash and sit at pixel cosine 0.8 and
    more: in a folder of small images copies are found in the pixels alone, by default."""
    from cnnlab.data.builtin import FASHION_CLASSES

    test = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0)).test
    root = tmp_path / "fashion"
    for split, part in (("train", slice(0, 1000)), ("test", slice(1000, 2000))):
        labels = test.labels[part]
        for cls in (1, 8):  # trousers and bags, 100 of each
            (root / split / FASHION_CLASSES[cls]).mkdir(parents=True)
            for i in torch.nonzero(labels == cls).flatten()[:100].tolist():
                Image.fromarray(test.images[part][i, 0].numpy()).save(
                    root / split / FASHION_CLASSES[cls] / f"{part.start + i:05d}.png")
    original = sorted((root / "test" / "Trouser").iterdir())[0]
    copy = root / "train" / "Trouser" / f"copy_{original.name}"
    Image.open(original).save(copy)  # the same pixels, saved again
    monkeypatch.setattr(check_labels, "cnn_model", _knows_every_label)  # labels beside the point
    result = cnnlab.check(root, out=str(tmp_path / "out"), folds=2, quiet=True, threads=2)
    assert result.summary["hash_bits"] == -1
    assert _copies(result) == {("leak", f"train/Trouser/{copy.name}",
                                f"test/Trouser/{original.name}")}
    hashed = cnnlab.check(root, out=str(tmp_path / "hashed"), folds=2, quiet=True, threads=2,
                          hash_bits=4)
    assert len(_copies(hashed)) > 100  # what the hash alone would call copies here


def test_check_json_reads_back_as_its_type_and_is_written_as_before(tmp_path):
    from cnnlab.base.errors import CnnlabError
    from cnnlab.base.typed import to_json_dict
    from cnnlab.check import CheckReport
    from cnnlab.check.run import CSV_COLUMNS

    data = _gray_folder(tmp_path / "bands", {"a": 10, "b": 10})
    (data / "a" / "000.png").rename(data / "b" / "from_a.png")
    out = tmp_path / "out"
    result = cnnlab.check(data, out=str(out), folds=2, epochs=1, quiet=True, threads=2)
    rows = [{column: getattr(f, column) for column in CSV_COLUMNS} for f in result.findings]
    before = json.dumps({**result.summary, "findings": rows}, indent=2) + "\n"  # the old writer's
    assert (out / "check.json").read_text() == before
    report = CheckReport.read(out)
    assert report.folder == out and report.data == result.summary["data"]
    assert report.counts == result.summary["counts"] and report.images_read == result.summary["read"]
    assert report.duplicate_pairs.leak == result.summary["duplicate_pairs"]["leak"]
    assert report.balance.imbalance == result.summary["balance"]["imbalance"]
    assert [to_json_dict(f) for f in report.findings] == rows
    assert report.label_issues == [f for f in report.findings if f.kind == "label-issue"]
    assert report.label_issues_figure == (out / "label_issues.png" if report.label_issues else None)
    assert report.page == out / "check.html"
    old = json.loads(before)
    del old["copies_embedding"]  # a check from before copies had an embedding of their own
    (out / "check.json").write_text(json.dumps(old))
    assert CheckReport.read(out).copies_embedding is None
    old["counts"]["leak"] = "3"
    (out / "check.json").write_text(json.dumps(old))
    with pytest.raises(CnnlabError, match=r"check.json: the field 'counts' must be a JSON object "
                                          r"of int, got \{"):
        CheckReport.read(out)


def _non_utf8(folder: Path, name: bytes) -> Path:
    """The path of a file named by bytes that are not UTF-8, as Python sees it (os.fsdecode)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def test_a_file_name_that_is_not_utf8_goes_from_check_csv_to_exclude(tmp_path, monkeypatch):
    data = _gray_folder(tmp_path / "data", {"a": 10, "b": 10})
    bad = _non_utf8(data / "b", b"bad\xff.png")
    shutil.copy(data / "a" / "000.png", bad)  # a copy with another label: check marks both
    out = tmp_path / "out"
    monkeypatch.setattr(check_labels, "cnn_model", _knows_every_label)  # labels beside the point
    cnnlab.check(data, out=str(out), folds=2, epochs=1, quiet=True, threads=2)
    marked = {r["file"] for r in read_rows(out / "check.csv") if r["exclude"] == "yes"}
    assert "b/bad\\udcff.png" in marked  # check.csv stays UTF-8
    assert main(["train", "--data", str(data), "--exclude", str(out / "check.csv"), "--model",
                 "conv(4) relu flatten dense", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    config = DataConfig(name=str(data), exclude=str(out / "check.csv"), val_fraction=0, stream=True)
    kept = load_dataset(config).train.paths
    assert bad not in kept and (data / "a" / "000.png") not in kept  # the files on disk
    assert len(kept) == 21 - len(marked)
    assert cnnlab.load(tmp_path / "run").card.excluded == {"train": len(marked)}


def _files_may_not_grow_past(limit: int):
    """For a child process: writes past `limit` bytes fail as on a full disk (EFBIG; SIGXFSZ,
    which would kill the process instead, ignored)."""
    import resource
    import signal

    def limit_it() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_it


def test_a_check_that_cannot_finish_writing_leaves_the_earlier_check_whole(tmp_path, monkeypatch):
    data = _gray_folder(tmp_path / "data", {"a": 10, "b": 10})
    out = tmp_path / "out"
    monkeypatch.setattr(check_labels, "cnn_model", _knows_every_label)  # the first check, quickly
    cnnlab.check(data, out=str(out), folds=2, epochs=1, quiet=True, threads=2)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    size = {name: len(content) for name, content in before.items()}
    # room for check.json and check.csv, not for the page: the disk fills up after two files
    limit = (size["check.json"] + size["check.html"]) // 2
    assert 1.2 * max(size["check.json"], size["check.csv"]) < limit < size["check.html"] / 1.2
    (data / "a" / "000.png").rename(data / "b" / "from_a.png")  # a check with other findings
    result = run_cnnlab("check", str(data), "--out", str(out), "--folds", "2", "--epochs", "1",
                        "--threads", "2", "--quiet", preexec_fn=_files_may_not_grow_past(limit),
                        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 2 and "File too large" in error_line(result.stderr)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "out"]


def test_exclude_counts_the_images_it_left_out_and_says_the_unreadable_apart(tmp_path, caplog,
                                                                             no_hang):
    data = _gray_folder(tmp_path / "data", {"a": 10, "b": 10})
    (data / "a" / "junk.png").write_bytes(b"not an image")
    (data / "b" / "empty.png").write_bytes(b"")
    os.mkfifo(data / "b" / "pipe.png")
    listed = tmp_path / "drop.txt"
    listed.write_text("a/000.png\na/junk.png\nb/empty.png\nb/pipe.png\n")
    run = cnnlab.train(data=str(data), model="conv(4) relu flatten dense", epochs=1, workers=0,
                       exclude=str(listed), val_fraction=0, out=str(tmp_path / "run"), quiet=True)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--exclude")]
    assert said and said[0] == (f"--exclude {listed}: left out 1 image (1 train); the other 3 it "
                                f"names are unreadable files, skipped anyway")
    assert cnnlab.load(run.path).card.excluded == {"train": 1}
    assert "skipping unreadable image" not in caplog.text  # left out, not skipped
