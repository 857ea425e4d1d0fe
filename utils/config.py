"""Typed option declarations, the strict YAML loader and the argparse builder of the scripts (bottom floor: this
module imports no project code).

Every configurable component declares its options beside its code as :class:`Option` records (the networks in
``models``, the strategies in ``engine/strategies``, the data in ``data/options.py``, the run, optimisation and
evaluation in ``engine/options.py``); ``engine/flags.py`` gathers them and builds each script's parser with
:func:`add_options`. Flag names are the official ones (docs/csakd.md §5.1, §6.2) plus this project's additions. A
run's configuration is one plain dict keyed by the flag names (``dest``), resolved in one way only::

    defaults (the option declarations)  ←  YAML file (--config FILE)  ←  command line

YAML keys are the flag names (``batch_size: 8``, ``student_layers: "1441"``); a key that no flag of either script
defines is an error naming the closest valid key. Keys that only the other script uses (``results`` in a training
run, ``epochs`` in a test run) are accepted and ignored, so one YAML file serves both scripts. The resolved dict is
saved as YAML next to the checkpoints and inside every checkpoint; that file is itself a valid ``--config``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import math
import os
import re
import reprlib
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import yaml


class ConfigError(ValueError):
    """A configuration problem: names the flag or YAML key, what was found and what was expected."""


class Range(NamedTuple):
    """Allowed values of a numeric flag: ``low <= v`` (``low < v`` if ``open_low``), ``v <= high`` if set."""

    low: float
    open_low: bool = False
    high: float | None = None

    def describe(self) -> str:
        text = f"{'>' if self.open_low else '>='} {self.low:g}"
        return text + (f" and <= {self.high:g}" if self.high is not None else "")

    def holds(self, v: float) -> bool:
        return (v > self.low if self.open_low else v >= self.low) and (self.high is None or v <= self.high)


#: ``Option.official`` when the flag's default does not depend on ``--compat``.
SAME = object()


@dataclasses.dataclass(frozen=True)
class Option:
    """One flag of the scripts and key of their YAML files, declared by the component that reads it.

    ``name`` is the official name and the config key (argparse ``dest``); ``flags`` the spellings on the command line
    (default ``--name``; aliases such as ``--SEED``). ``type``, ``choices`` (a sequence, or a registry whose names
    are read when the parser is built), ``nargs``, ``metavar``, ``const`` and ``switch`` (``store_true``) are
    argparse's. Every float is also required to be finite; ``range`` bounds numbers (lists element-wise).

    ``official`` is the default under ``--compat official`` when it differs from ``default`` (the flag's parsed
    default is then None, filled in by the resolution). The run metadata: ``affects_result`` False for settings
    that cannot change what a run computes (device, workers, folders, progress bar); ``resume`` ``"free"`` for
    settings a resumed run may change although they affect the result (``--epochs``), ``"fixed"`` for those that
    decide what its training state holds; ``control`` for flags that steer one command and say nothing about the
    run (``--resume``, ``--no_progress``); ``saved`` False for those left out of the run's ``config.yaml``, where
    replaying them would repeat the command (``--resume``, ``--overwrite``); ``teacher_only`` for settings that
    cannot change a run without a teacher; ``strategy`` / ``arch`` for settings only that ``--kd_strategy`` /
    ``--arch`` reads. ``beside_config``: a relative path in a YAML file names a file
    beside it first. ``from_yaml`` False: the key is read from the command line only (in a shared YAML file it is
    the other script's setting). ``hidden``: accepted, left out of ``--help``.
    """

    name: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    help: str = ""
    group: str = ""
    flags: tuple[str, ...] = ()
    choices: Iterable | None = None
    nargs: int | str | None = None
    metavar: str | tuple[str, ...] | None = None
    const: Any = None
    switch: bool = False
    range: Range | None = None
    official: Any = SAME
    affects_result: bool = True
    resume: str = "check"
    control: bool = False
    saved: bool = True
    teacher_only: bool = False
    strategy: str | None = None
    arch: str | None = None
    beside_config: bool = False
    from_yaml: bool = True
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.switch and self.default is None:
            object.__setattr__(self, "default", False)  # a switch is off unless given
        if self.control and self.affects_result:
            object.__setattr__(self, "affects_result", False)  # steering one command changes no result
        if self.resume not in ("free", "check", "fixed"):
            raise ValueError(f"option {self.name}: resume must be 'free', 'check' or 'fixed', got {self.resume!r}")

    @property
    def compat_dependent(self) -> bool:
        return self.official is not SAME

    def compat_default(self, compat: str | None) -> Any:
        """The default in ``--compat`` mode ``compat`` (``"official"`` or None)."""
        return self.official if compat == "official" and self.compat_dependent else self.default

    def argparse_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``add_argument`` for this option."""
        help_text = self.help
        if self.compat_dependent:
            help_text += f" (default {self.default:g}; {self.official:g} under --compat official)"
        kwargs: dict[str, Any] = {"dest": self.name, "default": None if self.compat_dependent else self.default,
                                  "help": argparse.SUPPRESS if self.hidden else help_text}
        if self.switch:
            return {**kwargs, "action": "store_true"}
        extra = {"type": self.type, "choices": None if self.choices is None else list(self.choices),
                 "nargs": self.nargs, "metavar": self.metavar, "const": self.const}
        return {**kwargs, **{k: v for k, v in extra.items() if v is not None}}


def str2bool(value: str | bool) -> bool:
    """A boolean flag's value: true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


def comma_list(names: Sequence[str], what: str = "metric") -> Callable[[str | Sequence[str]], list[str]]:
    """A flag type: a comma-separated string (or a YAML list) of some of ``names``."""
    def parse(value: str | Sequence[str]) -> list[str]:
        chosen = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
        unknown = [n for n in chosen if n not in names]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; choose from {','.join(names)}")
        return chosen

    parse.takes_list = True  # a YAML list is one value of this flag, not nargs
    return parse


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option],
                groups: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Add ``options`` to ``parser`` as argparse groups titled by ``Option.group``: the titles of ``groups`` first,
    in that order, then the others as met. Each action keeps its declaration as ``action.option``."""
    options = list(options)
    titles = [t for t in dict.fromkeys([*groups, *(o.group for o in options)]) if any(o.group == t for o in options)]
    made: dict[str, Any] = {"": parser}  # no group: the parser's own options
    for title in titles:
        if title and title not in made:
            made[title] = parser.add_argument_group(title)
    for opt in options:
        action = made[opt.group].add_argument(*(opt.flags or (f"--{opt.name}",)), **opt.argparse_kwargs())
        action.option = opt
    return parser


def declared_options(parser: argparse.ArgumentParser) -> dict[str, Option]:
    """{name: declaration} of the options :func:`add_options` put on ``parser``."""
    return {a.dest: a.option for a in parser._actions if hasattr(a, "option")}


def cli_only(parser: argparse.ArgumentParser) -> set[str]:
    """The keys ``parser`` reads from the command line only (``Option.from_yaml`` False)."""
    return {name for name, opt in declared_options(parser).items() if not opt.from_yaml}


# ---------------------------------------------------------------------------------------------------------------------
# YAML and resolution


def _names(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every accepted YAML key (dest and long option names without dashes) → its action."""
    out = {}
    for action in parser._actions:
        if action.dest in ("help", "config"):
            continue
        out[action.dest] = action
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action
    return out


class _Refused(yaml.YAMLError):
    """A YAML file that parses but is refused (a key given twice, too many aliases); the message is one line."""


#: Aliases (``*name``) a config may use. Each alias repeats a whole node, so a few hundred bytes of nested
#: aliases expand to gigabytes (a "billion laughs" file); a config needs few, if any.
MAX_YAML_ALIASES = 16

#: How values read from a file are shown in messages (a long list is cut, never printed whole).
_SHOWN = reprlib.Repr()
_SHOWN.maxlist, _SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 8, 3, 60, 60


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (the last would silently win) and reads integers the
    YAML 1.2 way: YAML 1.1's octal (``0122`` → 82) and sexagesimal (``1:20`` → 80) forms stay strings, so a
    string flag (``student_layers: 0122``) keeps its digits and an int flag reads them in decimal. More than
    :data:`MAX_YAML_ALIASES` aliases are refused as they are met, before anything is expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"more than {MAX_YAML_ALIASES} aliases (*name; the one on line {line} is number "
                               f"{self._aliases}): each repeats a whole value, so nested aliases can expand to "
                               f"gigabytes; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key != "<<" and isinstance(key, str | int | float | bool) and key in seen:
                raise _Refused(f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML config (UTF-8): a mapping of flag names to values, read by :class:`_ConfigLoader`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except _Refused as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag names to values, found {type(data).__name__}")
    return data


def _convert(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Apply a flag's type and choices to a YAML value, as argparse does to a command-line string."""
    def one(v: Any) -> Any:
        v = _yaml_scalar(action, key, v, source)
        if action.type is not None and (isinstance(v, str) or getattr(action.type, "takes_list", False)):
            try:
                v = action.type(v)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise ConfigError(f"{source}: key {key!r}: {exc}") from None
        if action.choices is not None and v not in action.choices:
            raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected one of {list(action.choices)}")
        return v

    if value is None:
        if action.default is not None:  # null is "unset" only for flags whose default is unset
            raise ConfigError(f"{source}: key {key!r} is null; expected a value like the default {action.default!r} "
                              f"(or leave the key out)")
        return None
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key {key!r} is a switch; expected true or false, got {_SHOWN.repr(value)}")
        return value
    if isinstance(action.nargs, int) or action.nargs in ("+", "*"):
        values = value if isinstance(value, list) else [value]
        if isinstance(action.nargs, int) and len(values) != action.nargs:
            raise ConfigError(f"{source}: key {key!r} takes {action.nargs} values, got {_SHOWN.repr(values)}")
        return [one(v) for v in values]
    if isinstance(value, list) and not getattr(action.type, "takes_list", False):
        raise ConfigError(f"{source}: key {key!r} takes one value, got the list {_SHOWN.repr(value)}")
    return one(value)


def _yaml_scalar(action: argparse.Action, key: str, v: Any, source: str) -> Any:
    """Check a YAML scalar's type against the flag's: an int flag takes whole numbers only (``epochs: 1.5``
    is refused, not truncated), a float flag takes numbers, a string flag takes strings (digits too)."""
    kind = action.type if action.type in (int, float, str) else (str if action.type is None else None)
    if kind is None or isinstance(v, str):
        return v
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if kind is int and not (number and isinstance(v, int)):
        raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a whole number")
    if kind is float and not number:
        raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a number")
    if kind is str:
        if not (number and isinstance(v, int)):
            raise ConfigError(f"{source}: key {key!r} = {_SHOWN.repr(v)}; expected a string (quote it: {key}: \"{v}\")")
        return str(v)
    return float(v) if kind is float else v


def check_ranges(cfg: dict, options: Mapping[str, Option]) -> None:
    """Raise ConfigError for the first value outside its option's ``range`` and for any non-finite number."""
    for key, value in cfg.items():
        rule = options[key].range if key in options else None
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"--{key}: expected a finite number, got {v}")
            if rule is not None and isinstance(v, int | float) and not isinstance(v, bool) and not rule.holds(v):
                raise ConfigError(f"--{key}: expected a number {rule.describe()}, got {v}")


def _beside(config: str, value: Any) -> Any:
    """A YAML value of a ``beside_config`` option (split lists, plugin files: a path or a list of them) with each
    relative path that names a file beside the YAML file ``config`` made relative to the working directory (so
    ``configs/aviris_band4.yaml`` finds ``configs/splits/aviris/*.txt`` from any folder). Other paths are left as
    given: the dataset then looks them up as given, then under ``--root``."""
    if isinstance(value, list):
        return [_beside(config, v) for v in value]
    if isinstance(value, str) and value and not os.path.isabs(value):
        candidate = os.path.join(os.path.dirname(os.path.abspath(config)), value)
        if os.path.isfile(candidate):
            return os.path.relpath(candidate)
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Plugins: the user's modules, imported before the parsers are built


def plugin_name(value: str) -> str:
    """A ``--plugins`` entry: a module name as given, a ``.py`` file as an absolute path (a run's saved config then
    names it from any working directory)."""
    return os.path.abspath(value) if str(value).endswith(".py") else str(value)


#: ``--plugins`` / ``plugins:``, in every script (a relative ``.py`` path in a YAML file names a file beside it first).
PLUGINS = Option("plugins", type=plugin_name, nargs="+", metavar="MODULE", beside_config=True,
                 help="modules (importable names or .py files) imported before the flags are read: a strategy, "
                      "network or dataset kind of one's own registers itself there (docs/strategies.md)")


def load_plugins(argv: Sequence[str] | None) -> list[str]:
    """Import the plugins ``argv`` names (:func:`plugins_of`, :func:`import_plugins`) and return them; call it before
    the parser is built, so that their choices and options are in it."""
    plugins = plugins_of(argv)
    import_plugins(plugins)
    return plugins


def plugins_of(argv: Sequence[str] | None) -> list[str]:
    """The plugins ``argv`` names: ``--plugins`` on the command line, else the ``plugins:`` key of its ``--config``
    YAML file (relative ``.py`` paths looked up beside that file first)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    pre.add_argument("--plugins", nargs="+", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.plugins is not None:
        return known.plugins
    if not known.config or not os.path.isfile(known.config):
        return []  # a missing --config is reported by parse_config
    listed = load_config_file(known.config).get("plugins") or []
    listed = [listed] if isinstance(listed, str) else listed
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise ConfigError(f"--config {known.config}: key 'plugins' = {_SHOWN.repr(listed)}; expected a list of module "
                          f"names or .py files")
    return _beside(known.config, listed)


def import_plugins(plugins: Iterable[str]) -> None:
    """Import each plugin once: a module name importable from ``PYTHONPATH`` (``my_pkg.strategy``) or a ``.py`` file.
    A plugin that is missing or fails to import is a ConfigError naming it and the cause."""
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                _import_file(plugin)
            else:
                importlib.import_module(plugin)
        except ConfigError:
            raise
        except Exception as exc:  # any error of a user's module: one line naming it
            raise ConfigError(f"--plugins {plugin}: import failed: {type(exc).__name__}: {exc}") from None


def _import_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"--plugins {path}: no such file")
    real = os.path.realpath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(real))[0])
    name = f"csakd_plugin_{stem}_{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    if name in sys.modules:  # imported already (a registry refuses a second registration)
        return
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
                 other: argparse.ArgumentParser | None = None, base: dict | None = None,
                 values: Mapping[str, Any] | None = None) -> dict:
    """Resolve defaults ← ``base`` ← ``--config`` YAML ← ``values`` ← command line into one flag dict.

    ``other`` is the sibling script's parser: YAML keys only it defines are accepted and dropped.
    ``base`` (a saved run config, for ``--resume``) replaces the flag defaults for the keys it has.
    ``values`` ({flag name: value}, from Python) are checked and typed as YAML values are (a string as the
    command line's, e.g. ``{"w_feat": "0"}``; a list for a flag of several values; a bool for a switch); unknown
    names are refused.
    Raises ConfigError naming every unknown YAML key with the closest valid one.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    mine = _names(parser)
    theirs = _names(other) if other is not None else {}
    for key in cli_only(parser):  # same name, different meaning in this script
        theirs[key] = mine.pop(key)
    overrides = {k: v for k, v in (base or {}).items() if k in mine and k != "config"}
    if known.config:
        file_cfg = load_config_file(known.config)
        unknown = [k for k in file_cfg if k not in mine and k not in theirs]
        if unknown:
            valid = sorted(set(mine) | set(theirs))
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.5)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"--config {known.config}: unknown key(s) {', '.join(hints)}; "
                              f"keys are flag names, see --help")
        for key, value in file_cfg.items():
            if key in mine:
                action = mine[key]
                if getattr(getattr(action, "option", None), "beside_config", False):
                    value = _beside(known.config, value)
                overrides[action.dest] = _convert(action, key, value, f"--config {known.config}")
    flags = _names(parser)  # all of them: a value given in Python is meant for this script, as on its command line
    for key, value in (values or {}).items():
        if key not in flags:
            close = difflib.get_close_matches(str(key), list(flags), n=1, cutoff=0.5)
            raise ConfigError(f"unknown flag {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        overrides[flags[key].dest] = _convert(flags[key], key, value, f"--{key}")
    parser.set_defaults(**overrides)
    cfg = vars(parser.parse_args(argv))
    cfg["config"] = known.config
    return cfg


def explicit_keys(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> set[str]:
    """The flag names (``dest``) that ``argv`` or its ``--config`` YAML file set, as opposed to defaults.

    ``parser`` is a fresh parser of the script (its defaults are replaced here). Used where a value read
    from a file (a checkpoint's widths) takes the place of a default but must not silently override a flag.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    given = set()
    if known.config:
        names = _names(parser)
        given |= {names[k].dest for k in load_config_file(known.config) if k in names}
    unset = object()  # not a string, so argparse never converts it
    parser.set_defaults(**{a.dest: unset for a in parser._actions if a.dest != "help"})
    given |= {k for k, v in vars(parser.parse_args(argv)).items() if v is not unset}
    given.discard("config")
    return given


def check_run_name(prefix: str) -> None:
    """``--prefix`` is one folder name: ``<checkpoint_dir>/<prefix>`` and ``<log_dir>/<prefix>`` are always a child
    of those folders, never the folder itself, a parent, another tree or an absolute path."""
    bad = [c for c in prefix if ord(c) < 32 or ord(c) == 127]
    seps = [s for s in ("/", "\\", os.sep, os.altsep) if s and s in prefix]
    if prefix in ("", ".", "..") or bad or seps:
        why = ("is empty" if not prefix else f"is {prefix!r}, which names no new folder" if prefix in (".", "..")
               else f"holds a path separator {seps[0]!r}" if seps else f"holds the control character {bad[0]!r}")
        raise ConfigError(f"--prefix {prefix!r}: a run name {why}; expected one folder name (the run folder is "
                          f"<checkpoint_dir>/<prefix>; choose the parent with --checkpoint_dir)")


def run_dir(cfg: dict) -> str:
    """The run folder ``<checkpoint_dir>/<prefix>``."""
    return os.path.join(cfg["checkpoint_dir"], cfg["prefix"])


def config_to_yaml(cfg: dict, leave_out: Collection[str] = ()) -> str:
    """The flag dict as YAML (plain types), loadable again with ``--config``; ``config`` (never a key) and the keys of
    ``leave_out`` (the options not ``saved``, such as ``--resume``) are left out so that the file describes the run,
    not one command."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()
             if k != "config" and k not in leave_out}
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None)
