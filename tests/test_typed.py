"""The typed-file reader: a dataclass read from parsed JSON by its type hints, one line for every
missing or malformed field, and its writer as the exact inverse."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from cnnlab.base.errors import CnnlabError
from cnnlab.base.typed import check_ranges, json_field, read_typed, to_json_dict


@dataclass(frozen=True)
class Size:
    height: int
    width: int

    def check(self, where: str) -> None:
        if self.height < 1:
            raise CnnlabError(f"{where}: height must be positive")


@dataclass(frozen=True)
class Part:
    name: str = json_field(key="class")
    weight: float = 1.0


@dataclass(frozen=True)
class Sheet:
    JSON_FORMAT = "cnnlab-sheet/1"

    title: str
    size: Size
    parts: tuple[Part, ...] = ()
    tags: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    scale: float | None = None
    where: Path | None = None
    mode: Literal["fast", "slow"] = "fast"
    spec: str = json_field("none", key=("layout", "spec"), required=True)
    extra: dict = json_field(factory=dict, extra=True)
    folder: Path | None = json_field(None, stored=False)


@dataclass(frozen=True)
class Counted:
    count: int = json_field(absent=0)  # required in code; files from before it read as 0


@dataclass(frozen=True)
class Scored:
    accuracy: float | None = json_field(None, within=(0, 1))
    seconds: int = json_field(0, within=(0, None))
    losses: tuple[float, ...] = json_field((), within=(0, None))
    best: float = json_field(0.0, key=("best", "accuracy"), within=(0, 1))


@dataclass(frozen=True)
class Strict:
    UNKNOWN_KEYS = "refuse"

    count: int


BASE = {"format": "cnnlab-sheet/1", "title": "t", "size": {"height": 2, "width": 3},
        "layout": {"spec": "grid"}}


def _with(**changes) -> dict:
    return {**json.loads(json.dumps(BASE)), **changes}


@pytest.mark.parametrize(("cls", "values", "expected"), [
    (Size, {"height": 2, "width": 3}, Size(2, 3)),
    (Sheet, BASE, Sheet("t", Size(2, 3), spec="grid")),
    # nested objects in a list, a renamed key, an int where a float is wanted
    (Sheet, _with(parts=[{"class": "a", "weight": 2}, {"class": "b"}]),
     Sheet("t", Size(2, 3), parts=(Part("a", 2.0), Part("b")), spec="grid")),
    # null is the default, or None where None is allowed
    (Sheet, _with(parts=None, scale=None), Sheet("t", Size(2, 3), spec="grid")),
    (Sheet, _with(scale=0.5, where="a/b", mode="slow", tags=["x"], counts={"train": 3}),
     Sheet("t", Size(2, 3), scale=0.5, where=Path("a/b"), mode="slow", tags=["x"],
           counts={"train": 3}, spec="grid")),
    # keys no field reads: kept by the extra field, ignored by others
    (Sheet, _with(later={"n": 1}), Sheet("t", Size(2, 3), spec="grid", extra={"later": {"n": 1}})),
    (Size, {"height": 2, "width": 3, "depth": 4}, Size(2, 3)),
    (Counted, {}, Counted(0)),
    (Counted, {"count": 7}, Counted(7)),
    # the ends of a range are inside it; None is no number
    (Scored, {"accuracy": 1, "seconds": 0, "losses": [0, 2.5], "best": {"accuracy": 0}},
     Scored(1.0, 0, (0.0, 2.5), 0.0)),
    (Scored, {"accuracy": None, "seconds": 10 ** 12, "best": {"accuracy": 0.5}},
     Scored(None, 10 ** 12, best=0.5)),
])
def test_a_file_reads_as_its_type(cls, values, expected):
    assert read_typed(cls, values, "f.json") == expected


@pytest.mark.parametrize(("cls", "values", "error"), [
    (Size, {"height": 2}, "f.json: the field 'width' is missing"),
    (Size, {"height": True, "width": 3}, "f.json: the field 'height' must be int, got True"),
    (Size, {"height": 2.0, "width": 3}, "f.json: the field 'height' must be int, got 2.0"),
    (Size, {"height": 0, "width": 3}, "f.json: height must be positive"),
    (Size, [2, 3], "f.json: expected a JSON object, got a list"),
    (Sheet, _with(size={"height": 2}), "f.json size: the field 'width' is missing"),
    (Sheet, _with(size={"height": -1, "width": 3}), "f.json size: height must be positive"),
    (Sheet, _with(size="2x3"), "f.json: the field 'size' must be a JSON object, got '2x3'"),
    (Sheet, _with(parts=[{"class": "a"}, {"weight": 1}]),
     "f.json parts[1]: the field 'class' is missing"),
    (Sheet, _with(parts=[{"class": "a", "weight": "heavy"}]),
     "f.json parts[0]: the field 'weight' must be float, got 'heavy'"),
    (Sheet, _with(scale=math.nan),
     "f.json: the field 'scale' must be float, got nan (numbers must be finite)"),
    (Sheet, _with(scale=math.inf),
     "f.json: the field 'scale' must be float, got inf (numbers must be finite)"),
    (Sheet, _with(scale=False), "f.json: the field 'scale' must be float, got False"),
    (Sheet, _with(tags="x"), "f.json: the field 'tags' must be a list of str, got 'x'"),
    (Sheet, _with(tags=["x", 1]), "f.json: the field 'tags' must be a list of str, got ['x', 1]"),
    (Sheet, _with(counts={"train": 1.5}),
     "f.json: the field 'counts' must be a JSON object of int, got {'train': 1.5}"),
    (Sheet, _with(mode="medium"),
     "f.json: the field 'mode' must be one of 'fast', 'slow', got 'medium'"),
    (Sheet, _with(where=3), "f.json: the field 'where' must be a path (str), got 3"),
    (Sheet, _with(layout={}), "f.json layout: the field 'spec' is missing"),
    (Sheet, _with(layout="grid"), "f.json: the field 'layout' must be a JSON object, got 'grid'"),
    (Sheet, {k: v for k, v in BASE.items() if k != "layout"}, "f.json: the field 'layout' is missing"),
    (Sheet, _with(format="cnnlab-sheet/2"),
     "f.json: unsupported sheet format 'cnnlab-sheet/2' (this cnnlab reads cnnlab-sheet/1)"),
    (Sheet, {k: v for k, v in BASE.items() if k != "format"}, "f.json: the field 'format' is missing"),
    (Strict, {"count": 1, "cuont": 2}, "f.json: unknown field 'cuont' (did you mean 'count'?)"),
    (Scored, {"accuracy": -0.5, "best": {}},
     "f.json: the field 'accuracy' must be a number from 0 to 1, got -0.5"),
    (Scored, {"accuracy": 1.5, "best": {}},
     "f.json: the field 'accuracy' must be a number from 0 to 1, got 1.5"),
    (Scored, {"accuracy": 1e300, "best": {}},
     "f.json: the field 'accuracy' must be a number from 0 to 1, got 1e+300"),
    (Scored, {"seconds": -1, "best": {}}, "f.json: the field 'seconds' must be a number 0 or more, got -1"),
    (Scored, {"losses": [1, -2], "best": {}},
     "f.json: the field 'losses' must be a number 0 or more, got -2.0"),
    (Scored, {"best": {"accuracy": 2}},
     "f.json best: the field 'accuracy' must be a number from 0 to 1, got 2.0"),
])
def test_a_bad_field_is_one_line_naming_it(cls, values, error):
    with pytest.raises(CnnlabError) as raised:
        read_typed(cls, values, "f.json")
    assert str(raised.value) == error


def test_a_range_holds_for_objects_made_in_code_too():
    check_ranges(Scored(0.5, 3), "row 1")
    for made, error in [(Scored(math.inf), "got inf"), (Scored(math.nan), "got nan"),
                        (Scored(losses=(1.0, math.inf)), "'losses' must be a number 0 or more")]:
        with pytest.raises(CnnlabError, match=f"^row 1: the field .*{error}"):
            check_ranges(made, "row 1")


def test_the_writer_is_the_readers_inverse():
    sheet = Sheet("t", Size(2, 3), parts=(Part("a", 2.0),), where=Path("a/b"), spec="grid",
                  extra={"later": [1]}, folder=Path("not/written"))
    values = to_json_dict(sheet)
    assert list(values)[0] == "format" and values["layout"] == {"spec": "grid"}
    assert values["parts"] == [{"class": "a", "weight": 2.0}] and values["later"] == [1]
    assert "folder" not in values and "extra" not in values
    assert read_typed(Sheet, json.loads(json.dumps(values)), "f.json") == \
        Sheet("t", Size(2, 3), parts=(Part("a", 2.0),), where=Path("a/b"), spec="grid",
              extra={"later": [1]})
