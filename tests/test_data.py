"""Datasets: digits, generated image folders (every mode, broken files), CSV manifests, IDX; files
too large (IDX headers, pixel limits) and FIFOs are refused or skipped and named."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.config import DataConfig
from cnnlab.data import FileImages, TensorImages, images, load_dataset
from cnnlab.data.idx import read_idx
from cnnlab.data.images import ImageReadError, convert_mode, image_to_tensor, open_image

from .helpers import make_folder, save_in_mode, shape_image
from .helpers import run_cnnlab as _cli


def test_digits_splits():
    data = load_dataset(DataConfig(name="digits", val_fraction=0.1))
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10
    total = len(data.train) + len(data.val) + len(data.test)
    assert total == 1797
    assert len(data.test) == round(1797 * 0.2)
    assert data.train.images.dtype == torch.uint8
    assert int(data.train.images.max()) == 255
    assert not data.flip_ok


def test_val_split_is_fixed_by_split_seed():
    a = load_dataset(DataConfig(name="digits"))
    b = load_dataset(DataConfig(name="digits"))
    c = load_dataset(DataConfig(name="digits", split_seed=1))
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_folder_with_every_mode_and_broken_files(tmp_path, caplog):
    made = make_folder(tmp_path / "shapes")
    data = load_dataset(DataConfig(name=str(tmp_path / "shapes"), val_fraction=0.25))
    assert data.class_names == ["bar", "square"]
    assert data.input_shape == (3, 24, 24)  # some images are RGB, all are 24x24
    assert isinstance(data.train, TensorImages)
    assert len(data.train) + len(data.val) == made["good"]
    assert sorted(data.skipped) == sorted(made["broken"])
    for path in made["broken"]:
        assert str(path) in caplog.text


def test_grayscale_folder_gets_one_channel(tmp_path):
    make_folder(tmp_path / "gray", broken=False, modes=["L", "I;16", "1"])
    assert load_dataset(DataConfig(name=str(tmp_path / "gray"))).input_shape == (1, 24, 24)


def test_folder_strict_stops_on_a_broken_file(tmp_path):
    make_folder(tmp_path / "shapes")
    with pytest.raises(Exception, match="unreadable image"):
        load_dataset(DataConfig(name=str(tmp_path / "shapes"), strict=True, workers=0))


def test_folder_streaming_skips_broken_files(tmp_path):
    made = make_folder(tmp_path / "shapes")
    data = load_dataset(DataConfig(name=str(tmp_path / "shapes"), stream=True, val_fraction=0.25,
                                   image_size=16, channels=3, workers=0))
    assert isinstance(data.train, FileImages)
    seen = sum(len(labels) for _, labels in data.train.batches(8))
    seen += sum(len(labels) for _, labels in data.val.batches(8))
    assert seen == made["good"]
    images, _ = next(iter(data.train.batches(4)))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8


def test_folder_with_train_val_test_subfolders(tmp_path):
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        make_folder(tmp_path / "data" / split, per_class=count, broken=False, modes=["RGB"])
    data = load_dataset(DataConfig(name=str(tmp_path / "data")))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 6)
    assert data.input_shape == (3, 24, 24)


def test_empty_class_folder_is_an_error(tmp_path):
    make_folder(tmp_path / "shapes", broken=False)
    (tmp_path / "shapes" / "empty").mkdir()
    with pytest.raises(CnnlabError, match=r"class folder .*empty has no image files"):
        load_dataset(DataConfig(name=str(tmp_path / "shapes")))


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CnnlabError, match="has no class folders"):
        load_dataset(DataConfig(name=str(tmp_path / "nothing")))


def test_csv_manifest_and_split_column(tmp_path):
    make_folder(tmp_path / "imgs", broken=False, per_class=5)
    rows = ["path,label,split"]
    for i, path in enumerate(sorted((tmp_path / "imgs").rglob("*.png"))):
        rows.append(f"imgs/{path.parent.name}/{path.name},{path.parent.name},"
                    f"{'test' if i % 5 == 0 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(DataConfig(name=str(tmp_path / "labels.csv"), val_fraction=0.2))
    assert data.class_names == ["bar", "square"]
    assert len(data.test) == 2
    assert len(data.train) + len(data.val) == 8


@pytest.mark.parametrize("bad_path", ["../outside.png", "/etc/hostname", "imgs/../../x.png"])
def test_csv_path_leaving_its_folder_is_refused(tmp_path, bad_path):
    folder = tmp_path / "set"
    make_folder(folder / "imgs", broken=False, per_class=2)
    (folder / "labels.csv").write_text(f"imgs/bar/000.png,bar\n{bad_path},square\n")
    with pytest.raises(CnnlabError, match="points outside the CSV's folder"):
        load_dataset(DataConfig(name=str(folder / "labels.csv")))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_converts(tmp_path, mode, channels):
    array = shape_image("square", seed=1)
    path = save_in_mode(array, mode, tmp_path / "image.png")
    tensor = image_to_tensor(open_image(path), channels, 12, 12)
    assert tensor.shape == (channels, 12, 12) and tensor.dtype == torch.uint8
    # the bright square stays bright and the background dark, whatever the mode
    assert tensor.float().max() > 150 and tensor.float().min() < 100


def test_sixteen_bit_scales_instead_of_clipping():
    image = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert image.mode.startswith("I;16")
    assert np.asarray(convert_mode(image, 1)).tolist() == [[0, 128, 255]]


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    assert np.asarray(convert_mode(image, 3)).tolist() == [[[255, 255, 255]] * 2]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_image(tmp_path / "rotated.jpg").size == (10, 20)


def test_only_image_formats_are_opened(tmp_path):
    (tmp_path / "x.png").write_bytes(b"%PDF-1.4 not an allowed format")
    with pytest.raises(ImageReadError):
        open_image(tmp_path / "x.png")


def _write_idx(path, header: bytes, payload: bytes):
    with gzip.open(path, "wb") as handle:
        handle.write(header + payload)


def test_idx_reader_checks_magic_and_length(tmp_path):
    good = tmp_path / "good.gz"
    _write_idx(good, bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") * 3, bytes(range(8)))
    assert read_idx(good).shape == (2, 2, 2)
    bad_magic = tmp_path / "magic.gz"
    _write_idx(bad_magic, bytes([0x1F, 0x8B, 8, 3]) + (2).to_bytes(4, "big") * 3, bytes(8))
    with pytest.raises(CnnlabError, match="not an unsigned-byte IDX file"):
        read_idx(bad_magic)
    short = tmp_path / "short.gz"
    _write_idx(short, bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") * 3, bytes(5))
    with pytest.raises(CnnlabError, match="payload has 5 bytes, the header promises 8"):
        read_idx(short)


def test_truncated_idx_in_a_dataset_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem, dims in (("train-images-idx3-ubyte", (3, 28, 28)), ("train-labels-idx1-ubyte", (3,)),
                       ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        _write_idx(folder / f"{stem}.gz", header, bytes(int(np.prod(dims)) - 1))
    with pytest.raises(CnnlabError, match="truncated or corrupt"):
        load_dataset(DataConfig(name="mnist"))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_dataset_offline_says_how_to_get_it(name):
    with pytest.raises(CnnlabError, match=rf"{name} is not on this machine .* "
                                          rf"`cnnlab datasets --download {name}`"):
        load_dataset(DataConfig(name=name))


def test_unknown_dataset_suggests():
    with pytest.raises(CnnlabError, match=r"unknown dataset 'fashion' \(did you mean "
                                          r"'fashion-mnist'\?\)"):
        load_dataset(DataConfig(name="fashion"))


def test_builtin_data_resized_and_given_three_channels():
    data = load_dataset(DataConfig(name="digits", image_size=28, channels=3))
    assert data.input_shape == (3, 28, 28)
    assert data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # gray in every channel
    assert data.train.images.float().max() > 200  # strokes survive resizing


def test_rgb_to_gray_uses_luma():
    from cnnlab.data.images import convert_tensor_images

    red = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    red[:, 0] = 255
    assert convert_tensor_images(red, 1, None).unique().tolist() == [76]  # 0.299 * 255


def test_an_idx_header_claiming_gigabytes_is_refused_before_inflating(tmp_path):
    import gzip

    from cnnlab.data.idx import read_idx

    path = tmp_path / "huge-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (1).to_bytes(4, "big") + (40000).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(1000))
    with pytest.raises(CnnlabError, match="more than the 1 GiB allowed"):
        read_idx(path)


def test_an_image_over_the_pixel_limit_is_skipped_and_named(tmp_path, monkeypatch):
    from PIL import Image

    from cnnlab.config import DataConfig
    from cnnlab.data import images, load_dataset

    from .helpers import make_shape_folder

    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    make_shape_folder(tmp_path / "shapes", per_class=10)
    big = tmp_path / "shapes" / "square" / "big.png"
    Image.new("L", (200, 100)).save(big)  # 20,000 pixels
    data = load_dataset(DataConfig(name=str(tmp_path / "shapes"), workers=0))
    assert big in data.skipped


def test_a_bad_pixel_limit_in_the_environment_is_a_warning_not_a_crash():
    env = {**os.environ, "CNNLAB_MAX_PIXELS": "abc"}
    result = subprocess.run([sys.executable, "-c", "import cnnlab.base.limits as l; "
                             "print(l.MAX_IMAGE_PIXELS)"], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "50000000"
    assert "CNNLAB_MAX_PIXELS='abc' is not a positive whole number" in result.stderr


def test_strict_names_the_bad_file_in_one_line(tmp_path):
    from .helpers import make_folder

    make_folder(tmp_path / "shapes")
    result = _cli("train", "--data", str(tmp_path / "shapes"), "--strict", "--epochs", "1",
                  "--out", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unreadable image") and "--strict" in lines[0]


def test_a_fifo_is_not_an_image(digits_run, fifo):
    with pytest.raises(images.ImageReadError, match="not a regular file"):
        images.open_image(fifo)
    with pytest.raises(CnnlabError, match="not a regular file"):
        cnnlab.load(digits_run.path).predict(str(fifo))


def test_a_fifo_in_a_csv_manifest_is_skipped_and_named(tmp_path, no_hang):
    make_folder(tmp_path, per_class=6, broken=False, modes=["L"])
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(tmp_path.rglob("*.png"))]
    os.mkfifo(tmp_path / "square" / "pipe.png")
    manifest = tmp_path / "data.csv"
    manifest.write_text("\n".join(["square/pipe.png,square", *rows]) + "\n")
    run = cnnlab.train(data=str(manifest), model="simple", epochs=1, image_size=8, workers=0,
                       out=str(tmp_path / "run"), quiet=True)
    assert run.status == "finished" and (tmp_path / "run" / "model.safetensors").is_file()


def test_fifos_and_broken_links_in_a_folder_are_skipped_and_each_named_once(tmp_path, caplog,
                                                                           no_hang):
    made = make_folder(tmp_path / "shapes", per_class=6, broken=False, modes=["L"])
    fifo = tmp_path / "shapes" / "bar" / "pipe.png"
    os.mkfifo(fifo)
    loop = tmp_path / "shapes" / "square" / "loop.png"
    loop.symlink_to(loop.name)  # itself
    dangling = tmp_path / "shapes" / "square" / "gone.png"
    dangling.symlink_to("deleted.png")
    data = load_dataset(DataConfig(name=str(tmp_path / "shapes"), val_fraction=0, test_fraction=0,
                                   workers=0))
    assert len(data.train) == made["good"]
    assert sorted(data.skipped) == sorted([fifo, loop, dangling])
    for path, why in ((fifo, "not a regular file (a FIFO)"), (loop, "a symbolic link loop"),
                      (dangling, "a symbolic link to deleted.png, which does not exist")):
        assert caplog.text.count(str(path)) == 1, caplog.text
        assert f"skipping unreadable image {path}: {why}" in caplog.text
    assert "skipped 3 unreadable image file(s)" in caplog.text


def test_train_names_each_skipped_file_once_though_calibration_loads_the_data_again(
        tmp_path, caplog, no_hang):
    make_folder(tmp_path / "shapes", per_class=10, broken=False, modes=["L"])
    fifo = tmp_path / "shapes" / "bar" / "pipe.png"
    os.mkfifo(fifo)
    loop = tmp_path / "shapes" / "square" / "loop.png"
    loop.symlink_to(loop.name)
    run = cnnlab.train(data=str(tmp_path / "shapes"), model="conv(4) relu flatten dense", epochs=1,
                       val_fraction=0.25, workers=0, out=str(tmp_path / "run"), quiet=True)
    assert cnnlab.load(run.path).card.unknown is not None  # calibrated: the data loaded twice
    for path in (fifo, loop):
        assert caplog.text.count(str(path)) == 1, caplog.text
    assert caplog.text.count("skipped 2 unreadable image file(s)") == 1
