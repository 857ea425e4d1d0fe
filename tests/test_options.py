"""Option declarations and registries: the config module is bottom floor, every flag is declared once with its
metadata, the run lists derive from it (no hkd_*/psd_* flag unclassified), and a registry names its flag."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from benchmarks.kd import _ignored
from engine.flags import TRAIN_GROUPS, build_train_parser, keys_where, option_table
from engine.run_folder import CONTROL_KEYS, RESUME_FIXED_KEYS, RESUME_FREE_KEYS
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


def test_the_run_lists_derive_from_the_declarations() -> None:
    assert RESUME_FIXED_KEYS == ("kd_mode", "kd_strategy", "arch")
    assert {"device", "workers", "log_dir", "no_progress", "prefix", "epochs", "eval_step"} <= RESUME_FREE_KEYS
    assert not {"lr", "seed", "w_kd", "hkd_acf", "psd_feat_weight"} & RESUME_FREE_KEYS
    assert set(CONTROL_KEYS) == {"config", "resume", "overwrite", "legacy_state"}
    assert set(keys_where(affects_result=False)) >= set(CONTROL_KEYS) | {"device", "workers", "log_dir"}
    table = option_table("train")
    for name in (n for n in table if n.startswith(("hkd_", "psd_"))):  # each is a strategy's or a network's
        opt = table[name]
        assert opt.strategy in ("hkd", "psd") or opt.group == "network", name
    assert {o.name for o in table.values() if o.compat_dependent} == {"adaptive_fuse", "w_feat"}


def test_a_strategy_s_own_flags_are_ignored_by_the_others() -> None:
    csakd, hkd = _ignored({"kd_mode": "online", "kd_strategy": "csakd"}), _ignored({"kd_mode": "online",
                                                                                    "kd_strategy": "hkd"})
    assert {"hkd_acf", "hkd_sample_rows", "psd_feat_weight"} <= set(csakd) and "w_kd" not in csakd
    assert {"w_kd", "w_feat", "psd_feat_weight"} <= set(hkd) and "hkd_acf" not in hkd
    alone = _ignored({"kd_mode": "none", "kd_strategy": "csakd"})
    assert {"w_kd", "hkd_acf", "psd_feat_weight", "teacher_layers"} <= set(alone) and "lr" not in alone


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
