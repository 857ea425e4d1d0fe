"""Option declarations and registries: the config module is bottom floor, every flag is declared once with its
metadata, the run classification (``engine.run_keys``) reads it (no hkd_*/psd_* flag unclassified), and a registry
names its flag."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine import run_keys
from engine.flags import TRAIN_GROUPS, build_train_parser, keys_where, option_table
from utils.config import declared_options
from utils.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"benchmarks", "data", "engine", "losses", "models", "utils"}


@pytest.mark.parametrize("module", ["utils/config.py", "utils/registry.py"])
def test_the_config_floor_imports_no_project_code(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and not node.level}
    relative = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not imported & PACKAGES and not relative


def test_every_flag_is_a_declaration_in_its_group_order() -> None:
    parser = build_train_parser()
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == set(declared_options(parser)) == set(option_table("train"))
    titles = [g.title for g in parser._action_groups if g._group_actions and g.title not in ("positional arguments",
                                                                                               "options")]
    assert titles == list(TRAIN_GROUPS)


def test_the_run_classification_reads_the_declarations() -> None:
    """``engine.run_keys`` answers from the options' metadata: a plugin's option is classified by its own."""
    assert keys_where(saved=False) == ("config", "resume", "legacy_state", "overwrite")
    assert set(keys_where(control=True)) == {"config", "resume", "legacy_state", "overwrite", "no_progress",
                                              "allow_emulated_precision"}
    table = option_table("train")
    for name, opt in table.items():
        assert run_keys.affects_result(name) == opt.affects_result and run_keys.teacher_only(name) == opt.teacher_only
        assert run_keys.strategy_only(name) == opt.strategy and run_keys.arch_only(name) == opt.arch
    for name in (n for n in table if n.startswith(("hkd_", "psd_"))):  # each is a strategy's or a network's
        assert table[name].strategy in ("hkd", "psd") or table[name].group == "network", name
    assert {o.name for o in table.values() if o.compat_dependent} == {"adaptive_fuse", "w_feat"}


def test_a_registry_names_its_flag_and_refuses_a_second_registration() -> None:
    kinds: Registry[int] = Registry("fruit", "--fruit")
    kinds.register("apple")(1)
    kinds.add("pear", 2, options=("an option",))
    assert kinds.names() == ["apple", "pear"] and kinds["pear"] == 2 and kinds.options() == ["an option"]
    with pytest.raises(ValueError, match=r"--fruit 'appel': unknown fruit; expected one of apple, pear "
                                         r"\(did you mean 'apple'\?\)"):
        kinds.lookup("appel")
    with pytest.raises(ValueError, match="fruit 'apple' is registered twice"):
        kinds.register("apple")(3)
