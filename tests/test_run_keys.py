"""``engine.run_keys``: every training flag is classified, and the classes agree with what the code reads."""

from __future__ import annotations

import pytest

from engine import run_keys
from engine.flags import build_train_parser

TRAIN_FLAGS = sorted(a.dest for a in build_train_parser()._actions if a.dest != "help")


def test_every_training_flag_is_classified():
    assert [k for k in TRAIN_FLAGS if not run_keys.classified(k)] == []


def test_unclassified_keys_count_as_affecting_the_result():
    """A key of an old saved config that no flag has any more must never match silently."""
    assert run_keys.affects_result("a_flag_removed_long_ago") and not run_keys.classified("a_flag_removed_long_ago")


@pytest.mark.parametrize("key", ["device", "workers", "prefix", "checkpoint_dir", "log_dir", "no_progress",
                                 "tb_scenes", "config", "resume", "overwrite"])
def test_where_and_how_a_run_is_made_does_not_affect_its_result(key):
    assert not run_keys.affects_result(key) and run_keys.resume_may_change(key)


def test_related_strategies_own_their_flags():
    """The hkd_*/psd_* flags the hand lists used to miss: each is read by one strategy (or network family)."""
    for key in ("hkd_acf", "hkd_row_chunk", "hkd_sample_rows"):
        assert run_keys.strategy_only(key) == "hkd" and run_keys.teacher_only(key)
    assert run_keys.strategy_only("psd_feat_weight") == "psd"
    assert run_keys.arch_only("psd_patches") == run_keys.arch_only("psd_patch_overlap") == "psd"
    assert run_keys.strategy_only("w_feat") == "csakd" and run_keys.strategy_only("lr") is None


def test_every_strategy_only_flag_is_a_training_flag_and_teacher_only():
    owned = [k for k in TRAIN_FLAGS if run_keys.strategy_only(k)]
    assert owned and all(run_keys.teacher_only(k) and run_keys.affects_result(k) for k in owned)


def test_the_recipe_drops_what_the_teacher_brings_and_the_seeds_only():
    free = {k for k in TRAIN_FLAGS if run_keys.recipe_free(k)}
    assert {"kd_mode", "kd_strategy", "seed", "data_seed", "w_kd", "teacher_ckpt", "hkd_acf"} <= free
    assert not free & {"lr", "epochs", "student_layers", "student_lr_scheduler", "batch_size", "hkd_heads"}


def test_resume_keeps_the_state_fixed_keys_and_may_extend_the_schedule():
    assert run_keys.resume_fixed() == ("kd_mode", "kd_strategy", "arch")
    assert run_keys.resume_may_change("epochs") and run_keys.affects_result("epochs")
    assert not run_keys.resume_may_change("lr") and not run_keys.resume_may_change("hkd_acf")
