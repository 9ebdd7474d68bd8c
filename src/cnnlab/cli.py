"""The command line, built from the verb table (verbs.py): a subcommand per verb with its settings as
flags; it runs the function Python runs, then shows the result. No verb is written here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .base.errors import CnnlabError, printable, suggest
from .base.settings import add_flags
from .config import TrainConfig
from .verbs import VERBS, Verb

# Other tools' names for our flags (Keras, Ultralytics, timm, fastai): a user who types them gets
# ours, where the verb has it; spelling distance alone finds nothing for most of them.
COMMON_FLAGS = {
    "--learning-rate": "--lr", "--learning_rate": "--lr", "--lr0": "--lr",
    "--batch": "--batch-size", "--bs": "--batch-size", "--batch_size": "--batch-size",
    "--gpu": "--device cuda", "--cuda": "--device cuda", "--cpu": "--device cpu",
    "--val-split": "--val-fraction", "--validation-split": "--val-fraction",
    "--test-split": "--test-fraction", "--freeze-backbone": "--freeze backbone",
    "--workers": "--threads", "--num-workers": "--workers", "--imgsz": "--image-size",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with a suggestion, exit code 2."""

    argv: Sequence[str] = ()  # the command line being parsed, to find the verb in an error

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            flag = message.split(":", 1)[1].split()[0].split("=")[0]
            message += self._suggest_flag(flag)
        if message.startswith("argument --lr:") and "'find'" in message:  # --lr stays a number
            message += "; to find one, train with --lr-find (or run cnnlab lr-find)"
        raise CnnlabError(f"{self.prog}: {message}")

    def _suggest_flag(self, flag: str) -> str:
        """' (did you mean X?)' from the verb's own flags, other tools' names first."""
        options = self._verb_options()
        common = COMMON_FLAGS.get(flag)
        if common is not None and common.split()[0] in options:
            return f" (did you mean '{common}'?)"
        return suggest(flag, options)

    def _verb_options(self) -> list[str]:
        """The flags of the verb on the command line (every verb's when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                verb = next((word for word in self.argv if word in action.choices), None)
                if verb is not None:
                    return action.choices[verb]._all_options()
        return self._all_options()

    def _all_options(self) -> list[str]:
        options = []
        for action in self._actions:
            options.extend(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    options.extend(parser._all_options())
        return options


def _add_verb(sub: argparse._SubParsersAction, verb: Verb) -> None:
    """A verb's parser from its table entry: train's flags where it trains, then its own settings'
    (which win where both have one, as tune's --out), then its positional arguments."""
    # A flag left out is absent (not None): the settings' default, or the config's, holds.
    parser = sub.add_parser(verb.name, help=verb.help, description=verb.description,
                            allow_abbrev=False, conflict_handler="resolve",
                            argument_default=argparse.SUPPRESS)
    if verb.trains:
        add_flags(parser, TrainConfig)
    add_flags(parser, verb.settings)
    for argument in verb.arguments:
        parser.add_argument(argument.name, nargs=argument.nargs, default=argument.default,
                            metavar=argument.metavar, help=argument.help)
    parser.set_defaults(settings=verb.settings)


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Design, train and study CNNs on images.",
                    allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    for verb in VERBS.values():
        _add_verb(sub, verb)
    return parser


def _by_section(options: dict[str, Any]) -> dict[str, Any]:
    """Parsed flags as keywords: {'data.image_size': 8} -> {'data': {'image_size': 8}}."""
    nested: dict[str, Any] = {}
    for key, value in options.items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


PARSER_KEYS = ("verb", "settings")  # what the parser records beside the flags


def run_verb(verb: Verb, args: argparse.Namespace) -> int:
    """What the Python function of the verb does with the same values, then its show: the flags
    given become its keywords (a flag not given is absent, so the settings' default holds)."""
    given = {key: value for key, value in vars(args).items()
             if key not in PARSER_KEYS and value is not None}
    positional = [given.pop(argument.name, argument.default) for argument in verb.arguments]
    settings = verb.settings_of(given)  # a bad value is one line before any work
    if verb.arguments and verb.arguments[-1].variadic:
        positional = [*positional[:-1], *positional[-1]]
    result = verb.function()(*positional, **_by_section(given))
    return verb.shower()(result, settings)


def _verbs(parser: Parser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def _check_verb(argv: list[str], parser: Parser) -> None:
    first = next((a for a in argv if not a.startswith("-")), None)
    verbs = _verbs(parser)
    if first is not None and first not in verbs:
        raise CnnlabError(f"unknown command {first!r}{suggest(first, verbs)}; "
                          f"commands: {', '.join(verbs)}")


def _setup_logging() -> None:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        parser = build_parser()
        parser.argv = argv
        _check_verb(argv, parser)
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 0
        return run_verb(VERBS[args.verb], args)
    except CnnlabError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder turned read-only mid-run
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot write or read{where}: {error.strerror or error}; every file "
              f"written before is whole (writes are atomic)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # training says what it kept and how to go on
        print(f"interrupted{': ' if str(interrupt) else ''}{interrupt}", file=sys.stderr)
        return 130
