"""What each option of a run is: the one classification of the flags that ``--resume``, the run fingerprints
(``engine.fingerprint``) and ``benchmarks.kd`` (reuse of finished runs, pairing with the student alone) read.

Questions asked of a key (a flag's ``dest``):

- :func:`run_control`: steers one command (``--resume``, ``--overwrite``) and says nothing about the run.
- :func:`affects_result`: changes what the run computes. False for where and how it runs (device, workers, paths,
  logging) and for flags accepted for compatibility that have no effect. A key nobody classified (a flag removed
  since a run was saved) counts as affecting the result, so that it never matches silently.
- :func:`teacher_only`: only read when there is a teacher (``--kd_mode`` online or offline): what a run without a
  teacher computes does not depend on it, and the *recipe* (what a distilled run and its student alone share)
  leaves it out.
- :func:`strategy_only` / :func:`arch_only`: the one strategy or network family that reads the key (None: every
  one); runs of another strategy or network do not depend on it.
- :func:`recipe_free`: may differ between a distilled run and the student-alone run it is paired with.
- :func:`resume_may_change`: affects the result, yet a ``--resume`` may change it (a longer schedule, a
  different validation cadence, another recovery patience) with a warning; a resume refuses a change of any
  other result-affecting key.

The lists below are private on purpose: callers ask the functions, so that the facts can move next to the
components that own the options without touching any caller.
"""

from __future__ import annotations

_RUN_CONTROL = frozenset({"config", "resume", "overwrite", "no_progress", "allow_emulated_precision",
                          "legacy_state"})
#: Where and how a run is made, what it logs, and compatibility flags without effect.
_RESULT_FREE = _RUN_CONTROL | frozenset({
    "prefix", "checkpoint_dir", "log_dir", "device", "workers", "gpus", "compile", "debug", "tb_scenes",
    "rgb_bands", "val_batch_size", "grad_log_every", "grad_checkpoint", "finetuning_step", "num_blocks",
    "network_mode",
})
#: Read only with a teacher: the distillation terms and the teacher's own network, schedule and weights.
_TEACHER_ONLY = frozenset({
    "w_kd", "w_feat", "feat_adapter", "feat_norm", "kd_warmup", "kd_decay", "block_mix", "block_mix_weight",
    "teacher_layers", "teacher_ckpt", "lr_scheduler", "hkd_acf", "hkd_row_chunk", "hkd_sample_rows",
    "psd_feat_weight",
})
_STRATEGY_ONLY = {
    **dict.fromkeys(("w_kd", "w_feat", "feat_adapter", "feat_norm", "kd_warmup", "kd_decay", "block_mix",
                     "block_mix_weight"), "csakd"),
    **dict.fromkeys(("hkd_acf", "hkd_row_chunk", "hkd_sample_rows"), "hkd"),
    "psd_feat_weight": "psd",
}
_ARCH_ONLY = {"psd_patches": "psd", "psd_patch_overlap": "psd"}
#: Besides the teacher-only keys: which regime and strategy distil, and the seeds (pairs are made per seed).
_RECIPE_FREE = _TEACHER_ONLY | frozenset({"kd_mode", "kd_strategy", "seed", "data_seed"})
_RESUME_MAY_CHANGE = frozenset({"epochs", "eval_step", "nan_patience", "resume_ckpt"})
#: Decide what a training state holds (which networks, optimisers, strategy parameters).
_RESUME_FIXED = ("kd_mode", "kd_strategy", "arch")
#: Every other flag of the training parser affects the result for every run (data, networks, optimisation,
#: losses, seeds). Named here so that the classification is complete: ``tests/test_run_keys.py`` checks that each
#: flag of the training parser is in one of these sets.
_RESULT_FOR_ALL = frozenset({
    "seed", "data_seed", "amp", "compat", "arch", "deterministic", "batch_size", "lr", "step_size",
    "weight_decay", "snr", "joint_loss", "resume_ind", "w_sam", "w_beba", "kd_mode", "kd_strategy",
    "student_init", "eval_last", "student_lr_scheduler", "w_unlabelled", "kd_augment", "w_augment", "val_metrics",
    "bands", "msi_bands", "scale", "num_base_chs", "num_agg_feat", "adaptive_fuse", "student_layers", "groups",
    "residual", "hkd_heads", "dataset", "root", "train_file", "val_file", "test_file", "image_size", "crop_size",
    "synthetic_scenes", "unlabelled", "srf", "wavelengths", "layout", "key", "blur", "blur_sigma", "blur_size",
    "phase", "border", "snr_hsi", "snr_msi", "misreg", "mis_pix", "mixed_align_opt",
}) | _RESUME_MAY_CHANGE


def run_control(key: str) -> bool:
    """Whether ``key`` only steers one command (never saved as part of what a run is)."""
    return key in _RUN_CONTROL


def affects_result(key: str) -> bool:
    """Whether ``key`` can change what a run computes (True for a key nobody classified)."""
    return key not in _RESULT_FREE


def teacher_only(key: str) -> bool:
    """Whether only a run with a teacher reads ``key``."""
    return key in _TEACHER_ONLY


def strategy_only(key: str) -> str | None:
    """The one ``--kd_strategy`` that reads ``key``, or None when every strategy may."""
    return _STRATEGY_ONLY.get(key)


def arch_only(key: str) -> str | None:
    """The one ``--arch`` whose networks read ``key``, or None when every network family may."""
    return _ARCH_ONLY.get(key)


def recipe_free(key: str) -> bool:
    """Whether ``key`` may differ between a distilled run and the student alone it is paired with."""
    return key in _RECIPE_FREE


def resume_may_change(key: str) -> bool:
    """Whether a ``--resume`` may change ``key`` although it affects the result (with a warning)."""
    return key in _RESUME_MAY_CHANGE or not affects_result(key)


def resume_fixed() -> tuple[str, ...]:
    """The keys a ``--resume`` can never change: the saved state holds networks of their values."""
    return _RESUME_FIXED


def classified(key: str) -> bool:
    """Whether ``key`` is named by this module (the test of its completeness asks this of every flag)."""
    return key in _RESULT_FREE or key in _TEACHER_ONLY or key in _ARCH_ONLY or key in _RESULT_FOR_ALL


__all__ = ["affects_result", "arch_only", "classified", "recipe_free", "resume_fixed", "resume_may_change",
           "run_control", "strategy_only", "teacher_only"]
