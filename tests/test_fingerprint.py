"""Run fingerprints (``engine.fingerprint``): what changes them and what does not, the upgrade rule for configs saved
before a flag existed, and where a run stores them; ``--resume`` refuses a change of what the run computes."""

from __future__ import annotations

import json

import pytest
import yaml
from test_train_run import tiny, tiny_test

import test_CSAKD
import train_CSAKD
from engine import fingerprint as fp
from engine.state import load_training_state
from utils.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def defaults() -> dict:
    return fp.flag_defaults()


def test_the_fingerprint_is_a_versioned_hash_of_canonical_json(defaults):
    shuffled = dict(reversed(list(defaults.items())))
    as_tuple = {**defaults, "synthetic_scenes": tuple(defaults["synthetic_scenes"])}  # as argparse may hold it
    assert fp.fingerprint(defaults) == fp.fingerprint(shuffled) == fp.fingerprint(as_tuple)
    prints = fp.fingerprints(defaults)
    assert prints["version"] == fp.VERSION == 1 and len(prints["run"]) == len(prints["recipe"]) == 64
    int(prints["run"], 16)


@pytest.mark.parametrize("change", [{"device": "cuda:3"}, {"workers": 7}, {"prefix": "other"},
                                    {"checkpoint_dir": "/elsewhere"}, {"log_dir": "x"}, {"no_progress": False},
                                    {"tb_scenes": 0}, {"overwrite": True}, {"config": "other.yaml"}])
def test_where_and_how_a_run_is_made_keeps_its_fingerprint(defaults, change):
    assert fp.fingerprint({**defaults, **change}) == fp.fingerprint(defaults)


@pytest.mark.parametrize("change", [{"lr": 2e-3}, {"seed": 5}, {"epochs": 3}, {"student_layers": "2222"},
                                    {"w_sam": 0.2}, {"kd_mode": "none"}])
def test_what_the_run_computes_changes_its_fingerprint(defaults, change):
    assert fp.fingerprint({**defaults, **change}) != fp.fingerprint(defaults)


def test_an_option_only_one_strategy_reads_changes_only_that_strategys_runs(defaults):
    runs = {"csakd": defaults, "none": {**defaults, "kd_mode": "none"},
            "hkd": {**defaults, "kd_strategy": "hkd", "hkd_heads": 2},
            "psd": {**defaults, "kd_strategy": "psd", "arch": "psd"}}
    for key, value, owner in (("hkd_acf", "pixel", "hkd"), ("psd_feat_weight", 1e-3, "psd"), ("w_feat", 0.3, "csakd"),
                              ("psd_patches", [4, 2, 1], "psd")):
        changed = {name for name, cfg in runs.items() if fp.fingerprint({**cfg, key: value}) != fp.fingerprint(cfg)}
        assert changed == {owner}, key


def test_upgrade_rule_an_absent_option_counts_as_its_default(defaults):
    older = {k: v for k, v in defaults.items() if not k.startswith(("hkd_", "psd_"))}
    assert fp.fingerprint(older) == fp.fingerprint(defaults)
    assert fp.fingerprint(older) != fp.fingerprint({**defaults, "hkd_heads": 1})
    assert fp.fingerprint({**defaults, "a_removed_flag": 1}) != fp.fingerprint(defaults)  # never matches silently
    official = fp.flag_defaults("official")  # the default of the config's own --compat mode
    assert fp.fingerprint({k: v for k, v in official.items() if k != "w_feat"}) == fp.fingerprint(official)


def test_the_recipe_leaves_out_what_the_teacher_brings_and_the_seeds(defaults):
    alone = {**defaults, "kd_mode": "none", "seed": 4}
    for distilled in ({**defaults, "w_feat": 0.5}, {**defaults, "kd_strategy": "hkd", "hkd_acf": "pixel"},
                      {**defaults, "kd_mode": "offline", "teacher_ckpt": "t.pth", "w_kd": 1.0}):
        assert fp.recipe_fingerprint(distilled) == fp.recipe_fingerprint(alone)
        assert fp.fingerprint(distilled) != fp.fingerprint(alone)
    assert fp.recipe_fingerprint({**alone, "lr": 5e-4}) != fp.recipe_fingerprint(alone)


def test_a_frozen_teacher_counts_by_its_content_when_given(defaults, tmp_path):
    offline = {**defaults, "kd_mode": "offline", "teacher_ckpt": str(tmp_path / "a" / "best.pth")}
    moved = {**offline, "teacher_ckpt": str(tmp_path / "b" / "best.pth")}
    assert fp.fingerprint(offline, "ab" * 32) == fp.fingerprint(moved, "ab" * 32) != fp.fingerprint(moved, "cd" * 32)
    assert fp.fingerprint(offline) != fp.fingerprint(moved)  # by path when the content is not known
    assert fp.fingerprint({**defaults, "teacher_ckpt": "x"}) == fp.fingerprint(defaults)  # online: never read


def test_a_run_stores_its_fingerprints_everywhere_and_resume_refuses_a_changed_result(tmp_path, capsys):
    assert train_CSAKD.main(tiny(tmp_path, epochs=1)) == 0
    run = tmp_path / "ck" / "tiny"
    text = (run / "config.yaml").read_text()
    prints = load_training_state(run / "state.pth")[fp.KEY]
    assert prints == fp.run_fingerprints(train_CSAKD.load_config(tiny(tmp_path, epochs=1)))
    assert text.startswith(f"# run fingerprint v1: {prints['run']}\n# recipe fingerprint v1: {prints['recipe']}\n")
    assert yaml.safe_load(text)["epochs"] == 1  # still a plain --config
    assert train_CSAKD.load_config(["--config", str(run / "config.yaml")])["lr"] == pytest.approx(1e-3)
    for role in ("teacher", "student"):
        assert read_checkpoint(run / role / "best.pth")[fp.KEY] == prints
    assert test_CSAKD.main(tiny_test(tmp_path, "--results", str(tmp_path / "res"))) == 0
    assert json.loads((tmp_path / "res" / "summary.json").read_text())[fp.KEY] == prints

    before = (run / "state.pth").read_bytes()
    capsys.readouterr()
    assert train_CSAKD.main(tiny(tmp_path, "--resume", "--lr", "0.002", "--w_sam", "0.3", epochs=2)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --resume {run / 'state.pth'}: options that change the result differ from the run's (saved → asked): "
        f"lr 0.001 → 0.002, w_sam 0.1 → 0.3; resume without changing them, or start a new run (another --prefix, or "
        f"--overwrite); nothing was written")
    assert (run / "state.pth").read_bytes() == before
    # where and how it runs may change, and so may the schedule's length (with a warning)
    assert train_CSAKD.main(tiny(tmp_path, "--resume", "--workers", "1", "--tb_scenes", "0", epochs=2)) == 0
    assert "warning: resuming with changed settings" in capsys.readouterr().out
    assert load_training_state(run / "state.pth")[fp.KEY]["run"] != prints["run"]  # two epochs now
