"""`cnnlab predict`'s inputs: files, folders, globs and videos expanded, image files decoded in
batches and video frames sampled, each predicted by the run's Predictor (run.predictor)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from ..base.errors import CnnlabError
from ..base.fileio import is_dir, is_file
from ..data.images import is_image_file, to_float
from ..data.splits import DecodeFiles, collate_decoded
from ..run.prediction import Prediction
from ..run.predictor import Predictor
from .settings import PredictSettings

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass
class Failure:
    input: str
    reason: str


@dataclass
class Inputs:
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    missing: list[Failure] = field(default_factory=list)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _add_file(found: Inputs, path: Path) -> None:
    (found.videos if _is_video(path) else found.images).append(path)


def expand_inputs(inputs: list[str]) -> Inputs:
    """Files, folders (recursive) and globs -> image and video files; names that match nothing."""
    found = Inputs()
    for text in inputs:
        path = Path(text).expanduser()
        if is_dir(path):
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if is_image_file(child) or _is_video(child):
                    _add_file(found, child)
        elif is_file(path):
            _add_file(found, path)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            for match in matches:
                _add_file(found, match)
            if not matches:
                found.missing.append(Failure(text, "no file matches this pattern"))
        else:
            found.missing.append(Failure(text, "no such file or folder"))
    return found


def predict_files(predictor: Predictor, paths: list[Path], topk: int = PredictSettings.topk,
                  batch_size: int = PredictSettings.batch_size,
                  workers: int = PredictSettings.workers) -> Iterator[Prediction | Failure]:
    """Predict image files in batches, decoded by DataLoader workers; bad files become Failures."""
    dataset = DecodeFiles(paths, [0] * len(paths), predictor.input_shape, False, *predictor.resize)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_decoded,
                        num_workers=workers if len(paths) > batch_size else 0)
    for images, _, indices, bad in loader:
        for index, reason in bad:
            yield Failure(str(paths[index]), reason.split(": ", 1)[-1])
        if indices:
            yield from predictor.predict_batch(to_float(images),
                                               [str(paths[index]) for index in indices], topk)


def _video_frames(path: Path, fps: float) -> Iterator[tuple[int, float, Image.Image]]:
    """Frames sampled every 1/fps seconds, read with PyAV: (frame number, seconds, image)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            next_time = 0.0
            for number, frame in enumerate(container.decode(stream)):
                seconds = float(frame.time) if frame.time is not None else number / fps
                if seconds + 1e-6 >= next_time:
                    next_time = seconds + 1.0 / fps
                    yield number, round(seconds, 3), frame.to_image()
    except (av.FFmpegError, IndexError, OSError) as error:
        raise CnnlabError(f"{path}: cannot read the video ({error})") from None


def predict_video(predictor: Predictor, path: Path, fps: float = PredictSettings.fps,
                  topk: int = PredictSettings.topk,
                  batch_size: int = 64) -> tuple[list[Prediction], Prediction]:
    """Per-frame predictions at `fps`, and the clip's label: the mean of the frame probabilities."""
    if fps <= 0:
        raise CnnlabError(f"--fps must be positive, got {fps}")
    frames, probabilities = [], []
    batch: list[tuple[int, float, torch.Tensor]] = []

    def flush() -> None:
        probs, scores = predictor.assess(torch.stack([item[2] for item in batch]))
        probabilities.append(probs)
        predicted = predictor.predictions(probs, predictor.verdicts(scores, len(batch)),
                                          [str(path)] * len(batch), topk)
        frames.extend(replace(prediction, frame=number, time=seconds)
                      for prediction, (number, seconds, _) in zip(predicted, batch, strict=True))
        batch.clear()

    for number, seconds, image in _video_frames(path, fps):
        batch.append((number, seconds, predictor.preprocess(image)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not frames:
        raise CnnlabError(f"{path}: the video has no frames")
    clip = torch.cat(probabilities).mean(0, keepdim=True)
    return frames, Prediction(str(path), predictor.top(clip, topk)[0], frames=len(frames))
