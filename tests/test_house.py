"""The house: imports run one way (base, config, data and models, tasks, run, the stages, the
facades), a stage reaches another only through its package's public names, and every verb of the
verb table is one command and one Python function with the same result."""

import ast
import dataclasses
import inspect
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

import cnnlab
from cnnlab.api import python_function
from cnnlab.base.settings import option, resolve
from cnnlab.cli import build_parser, main
from cnnlab.verbs import VERBS, Argument, Verb, register_verb

PACKAGE = Path(cnnlab.__file__).parent
FLOORS = {"base": 1, "config": 2, "data": 3, "models": 3, "tasks": 4, "run": 5}
FACADES = {"verbs", "api", "cli", "__init__", "__main__"}
STAGE_FLOOR, FACADE_FLOOR = 6, 7


def _room(parts: tuple[str, ...]) -> tuple[str, int]:
    top = parts[0]
    return top, FACADE_FLOOR if top in FACADES else FLOORS.get(top, STAGE_FLOOR)


def _imports(path: Path):
    """(line, imported module's parts under cnnlab, names taken) for each cnnlab import."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[:-1])[:len(parts) - node.level]
            module = tuple(base + (node.module.split(".") if node.module else []))
            if not module:  # `from .. import __version__` from a top-level module
                continue
            yield node.lineno, module, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnlab."):
            yield node.lineno, tuple(node.module.split(".")[1:]), [a.name for a in node.names]


def _arrows():
    for path in sorted(PACKAGE.rglob("*.py")):
        me = path.relative_to(PACKAGE).with_suffix("").parts
        for line, module, names in _imports(path):
            yield f"{'/'.join(me)}.py:{line}", me, module, names


def test_no_import_runs_from_a_lower_floor_to_a_higher_one():
    upward = []
    for where, me, module, _ in _arrows():
        (mine, floor), (theirs, other) = _room(me), _room(module)
        if mine != theirs and other > floor:
            upward.append(f"{where} imports {'.'.join(module)}")
    assert upward == []


def test_a_stage_reaches_another_only_through_its_public_names():
    """`from ..evaluate import read_predictions` (a name of evaluate's __all__), never
    `from ..evaluate.top_losses import ...`: a stage's modules are its own to rearrange."""
    reaching_in = []
    for where, me, module, names in _arrows():
        (mine, floor), (theirs, other) = _room(me), _room(module)
        if mine == theirs or floor != STAGE_FLOOR or other != STAGE_FLOOR:
            continue
        public = set(import_module(f"cnnlab.{theirs}").__all__)
        if len(module) > 1 or not set(names) <= public:
            reaching_in.append(f"{where} takes {names} from {'.'.join(module)}")
    assert reaching_in == []


def test_the_stages_import_each_other_without_circles():
    needs: dict[str, set[str]] = {}
    for _, me, module, _ in _arrows():
        (mine, floor), (theirs, other) = _room(me), _room(module)
        if mine != theirs and floor == other == STAGE_FLOOR:
            needs.setdefault(mine, set()).add(theirs)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(step == goal or (step not in seen and reaches(step, goal, seen | {step}))
                   for step in needs.get(start, ()))

    assert [stage for stage in needs if reaches(stage, stage, set())] == []


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_verb_has_settings_a_show_and_a_python_function_of_its_result(name):
    verb = VERBS[name]
    assert dataclasses.is_dataclass(verb.settings)
    function, show = getattr(cnnlab, verb.python), verb.shower()
    assert callable(function) and callable(show)
    runs = inspect.signature(verb.function()).return_annotation
    shows = list(inspect.signature(show).parameters.values())[0].annotation
    assert runs is not inspect.Signature.empty and str(runs) == str(shows), (runs, shows)
    # cnnlab.VERB is the verb's own function: the one the table names, or made from it
    assert function is verb.function() or getattr(function, "verb", None) is verb
    settings = inspect.signature(function).parameters
    for field in dataclasses.fields(verb.settings):
        assert field.name in settings or any(p.kind is p.VAR_KEYWORD for p in settings.values())


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_verb_is_a_command_with_its_settings_as_flags(name):
    verb = VERBS[name]
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    parser = sub.choices[name]
    dests = {action.dest for action in parser._actions}
    for field in dataclasses.fields(verb.settings):
        assert field.name in dests, (name, field.name)
    for argument in verb.arguments:
        assert argument.name in dests


def test_a_verb_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_verb(Verb("evaluate", "again", VERBS["evaluate"].settings,
                           "cnnlab.evaluate.run:evaluate_run", "cnnlab.evaluate.show:show_evaluation"))
    assert VERBS["evaluate"].help != "again"


def test_a_function_made_from_the_table_documents_and_types_its_keywords():
    made = python_function(VERBS["attack"])
    parameters = inspect.signature(made).parameters
    assert list(parameters)[:2] == ["run", "settings"]
    assert parameters["eps"].default == "0,0.01,0.03,0.1" and parameters["limit"].default == 1000
    assert "limit: attack the first N images of the split" in made.__doc__
    with pytest.raises(cnnlab.base.errors.CnnlabError, match="did you mean 'limit'"):
        made("no-such-run", limt=3)


@pytest.mark.parametrize("verb", ["layers", "datasets"])
def test_the_command_prints_what_the_python_function_returns(verb, capsys):
    assert main([verb]) == 0
    printed = capsys.readouterr().out
    spec = VERBS[verb]
    assert spec.shower()(getattr(cnnlab, verb)(), spec.settings()) == 0
    assert capsys.readouterr().out == printed and printed


def test_no_verbs_help_loads_torch():
    code = ("import contextlib, io, sys\n"
            "from cnnlab.cli import main\n"
            "from cnnlab.verbs import VERBS\n"
            "for verb in VERBS:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        main([verb, '--help'])\n"
            "print(sorted(m for m in ('torch', 'timm', 'optuna', 'matplotlib', 'sklearn')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@dataclasses.dataclass(frozen=True)
class EchoSettings:
    times: int = option(1, "how many times to say it", minimum=1)
    shout: bool = option(False, "in capitals")


def echo(word: str, settings: EchoSettings | None = None, **options) -> list[str]:
    settings = resolve(EchoSettings, settings, options)
    return [word.upper() if settings.shout else word] * settings.times


def show_echo(result: list[str], settings: EchoSettings) -> int:
    print("\n".join(result))
    return 0


def test_a_new_verb_is_one_entry_in_the_table(monkeypatch, capsys):
    """As CONTRIBUTING.md says: a settings class, the work, the show and one table entry make a
    command with flags and checks, and a Python function with typed keywords."""
    verb = Verb("echo", "say a word", EchoSettings, f"{__name__}:echo", f"{__name__}:show_echo",
                (Argument("word", "the word"),))
    monkeypatch.setitem(VERBS, "echo", verb)
    assert main(["echo", "hi", "--times", "2", "--shout"]) == 0
    assert capsys.readouterr().out == "HI\nHI\n"
    assert main(["echo", "hi", "--times", "0"]) == 2
    assert "--times must be at least 1" in capsys.readouterr().err
    function = python_function(verb)
    assert function("hi", times=3) == ["hi"] * 3
    assert inspect.signature(function).parameters["shout"].annotation is bool


YAML_READERS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
                "full_load_all", "unsafe_load_all", "compose", "compose_all"}


def test_yaml_is_read_only_through_the_bounded_loader():
    """A few lines of nested aliases stand for billions of values: every YAML a user can give is
    read by base.yamlload.load_yaml, which bounds them."""
    readers = [f"{path.relative_to(PACKAGE)}:{node.lineno}"
               for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "base" / "yamlload.py"
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr in YAML_READERS
               and isinstance(node.value, ast.Name) and node.value.id == "yaml"]
    assert readers == []
