"""Options of the run, the training loop and its optimisation, and the evaluation (``utils.config.Option`` records;
``engine/flags.py`` gathers them with the networks', strategies' and data's own).

The official flags keep their official names, meanings and defaults (docs/csakd.md §5.1, §6.2).
"""

from __future__ import annotations

import dataclasses

from engine.pansharpening_metrics import FR_METRICS, RR_METRICS, TOOLBOX_DIM_CUT
from utils import defaults
from utils.config import PLUGINS, Option, Range, comma_list, str2bool

RUN = "run"
TRAINING = "training (official flags)"
WEIGHTS = "loss weights (official: 0.1 each)"
RELATED = "related strategies (--kd_strategy hkd | psd; docs/strategies.md)"
PROJECT = "training (this project)"
VARIANTS = "csakd strategy variants (not official; the defaults are the paper's terms)"
TEST = "test"

KD_MODES = ("online", "offline", "none")
AMP_MODES = ("off", "bf16", "fp16")
VAL_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim")
TEST_METRICS = ("psnr", "sam", "ergas", "rmse", "ssim", "uiqi", "cc")
#: Every name ``--metrics`` accepts: HSI fusion's, then the pansharpening toolbox's (RR, FR); which of them a test
#: can compute depends on its data (``engine.evaluate.test_metrics``).
ALL_TEST_METRICS = tuple(dict.fromkeys((*TEST_METRICS, *RR_METRICS, *FR_METRICS)))

_POSITIVE, _NON_NEGATIVE = Range(1), Range(0)


def _run(name: str, **kw) -> Option:
    return Option(name, group=RUN, **kw)


RUN_OPTIONS = (
    _run("config", metavar="FILE.yaml", help="YAML file whose keys are flag names; the command line overrides it",
         control=True, saved=False),
    # a plugin changes a run only through the options it brings (--kd_strategy, its flags), which are compared
    dataclasses.replace(PLUGINS, group=RUN, affects_result=False),
    _run("seed", type=int, default=defaults.SEED, flags=("--seed", "--SEED"),
         help="seed of every random stream (official --SEED 1029)"),
    _run("device", type=str, default="auto", help="auto | cpu | cuda | cuda:N (official default cuda:0)",
         affects_result=False),
    _run("prefix", type=str, default="KD_4bn_Band4", affects_result=False,
         help="run name: checkpoints in <checkpoint_dir>/<prefix>/, TensorBoard in <log_dir>/<prefix>"),
    _run("checkpoint_dir", type=str, default="checkpoints", help="parent folder of the run folders",
         affects_result=False),
    _run("workers", type=int, default=4, range=_NON_NEGATIVE, affects_result=False,
         help="DataLoader worker processes (0 = load in the main process)"),
    _run("amp", choices=AMP_MODES, default="off",
         help="mixed precision: off | bf16 | fp16 (autocast; fp16 training uses a gradient scaler); on a CPU without "
              "native bf16/fp16 refused (emulated: slower than fp32)"),
    _run("allow_emulated_precision", switch=True, control=True,
         help="run --amp bf16|fp16 or --precision bf16 on a CPU that would only emulate them (for testing; slower "
              "than fp32 there)"),
    _run("compile", switch=True, help="wrap the networks with torch.compile (off by default)", affects_result=False),
    _run("network_mode", type=int, choices=(1,), default=1, affects_result=False,
         help="official input mode; CSAKD has only mode 1 (LR-HSI + HR-MSI)"),
    _run("debug", type=str2bool, default=False, flags=("--DEBUG",), affects_result=False,
         nargs="?", const=True, help="accepted for compatibility; no effect"),
    _run("gpus", type=int, default=1, range=_NON_NEGATIVE, affects_result=False,
         help="accepted for compatibility; no effect: one process uses one device, several GPUs or machines are used "
              "with torchrun --nproc_per_node N (docs/distributed.md)"),
)


def _train(name: str, **kw) -> Option:
    return Option(name, group=TRAINING, **kw)


def _own(name: str, **kw) -> Option:
    return Option(name, group=PROJECT, **kw)


TRAIN_OPTIONS = (
    _train("batch_size", type=int, default=4, range=_POSITIVE,
           help="training batch size per process (global batch = this × processes; paper run: 8)"),
    _train("epochs", type=int, default=600, range=_POSITIVE, resume="free", help="training epochs (paper run: 800)"),
    # Finite but absurd values overflow later (an lr of 1e308 trains to Inf weights): bounded so that they end at
    # parse time, before anything is written.
    _train("lr", type=float, default=1e-4, range=Range(0, open_low=True, high=1e3),
           help="initial learning rate of both networks"),
    _train("lr_scheduler", choices=("cosine", "step"), default="cosine", teacher_only=True,
           help="teacher schedule: cosine to 1e-10 over the epochs, or StepLR(step_size, 0.92); the student always "
                "uses StepLR(step_size, 0.9)"),
    _train("step_size", type=int, default=100, range=_POSITIVE, help="StepLR period in epochs"),
    _train("weight_decay", type=float, default=0.0, range=_NON_NEGATIVE, help="AdamW weight decay of both networks"),
    _train("snr", type=float, default=35.0, range=Range(0, high=300),
           help="AWGN on the training LR-HSI in dB (independent draws for teacher and student); 0 = none"),
    _train("eval_step", type=int, default=2, range=_POSITIVE, resume="free",
           help="validate when epoch %% eval_step == 0 (epoch 0 included)"),
    _train("joint_loss", type=int, choices=(0, 1), default=1,
           help="1: full losses; 0: reconstruction term only (no SAM/BEBA/distillation)"),
    _train("resume_ind", type=int, default=0, range=_NON_NEGATIVE,
           help="official warm start: load both networks' last.pth from --resume_ckpt (or this run) and continue at "
                "this epoch with fresh optimisers (cosine over epochs − resume_ind)"),
    _train("resume_ckpt", type=str, default="", resume="free",
           help="run folder of the warm start (default: this run's); a state.pth here means --resume"),
    _train("finetuning_step", type=int, default=300, range=_NON_NEGATIVE, affects_result=False,
           help="accepted for compatibility; unused, as in the official training loop"),
    Option("w_sam", type=float, default=0.1, range=_NON_NEGATIVE, group=WEIGHTS,
           help="SAM term (teacher and student)"),
    Option("w_beba", type=float, default=0.1, range=_NON_NEGATIVE, group=WEIGHTS,
           help="band-energy (BEBA) term (teacher and student)"),
    _own("kd_mode", choices=KD_MODES, default="online", resume="fixed",
         help="online: the paper's per-batch co-training; offline: frozen teacher from --teacher_ckpt; none: the "
              "student alone (baseline without distillation)"),
    # choices: the strategies registered when the parser is built (engine/flags.py)
    _own("kd_strategy", default="csakd", resume="fixed",
         help="distillation strategy (engine/strategies): what the student learns from the teacher; csakd = the "
              "paper's response + feature distillation"),
    _own("teacher_ckpt", type=str, default="", teacher_only=True, help="teacher weights for --kd_mode offline"),
    _own("student_init", choices=("random", "teacher"), default="random",
         help="teacher: start the student from the converged --teacher_ckpt wherever a module matches by name and "
              "shape (stems, first stream blocks, CSA fuser, head; named in the log), with --kd_mode none "
              "(inheritance alone) or offline (docs/distillation.md)"),
    _own("eval_last", switch=True,
         help="also validate after the last epoch (official: only when epoch %% eval_step == 0), so that best.pth "
              "can be the final weights"),
    _own("student_lr_scheduler", choices=("step", "cosine"), default="step",
         help="student schedule: step = the official StepLR(step_size, 0.9); cosine = to 1e-10 over the epochs, as "
              "the teacher's (docs/distillation.md)"),
    _own("grad_log_every", type=int, default=0, range=_NON_NEGATIVE, affects_result=False,
         help="every N steps log to TensorBoard grad/student/<term>: the norm of each weighted term's gradient on "
              "the student's parameters (one extra backward per term; 0 = off)"),
    _own("resume", type=str, nargs="?", const="auto", metavar="STATE", control=True, saved=False,
         help="continue exactly from a full training state (default <run>/state.pth)"),
    _own("legacy_state", switch=True, control=True, saved=False,
         help="resume a training state of format version 3 or earlier (before plain-data states): trusts NumPy's "
              "array reconstructor to read its RNG state, and nothing else; for files you wrote"),
    _own("overwrite", switch=True, control=True, saved=False,
         help="start afresh even if the run folder holds a run"),
    _own("deterministic", switch=True, help="deterministic kernels (bit-exact reruns and resumes on the same machine)"),
    _own("grad_checkpoint", switch=True, help="gradient checkpointing (less memory, slower)", affects_result=False),
    _own("nan_patience", type=int, default=3, range=_POSITIVE, resume="free",
         help="after this many non-finite steps in a row: restore the last good state, halve the lrs"),
    _own("val_batch_size", type=int, range=_POSITIVE, affects_result=False,
         help="validation batch size (default --batch_size)"),
    _own("val_metrics", type=comma_list(TEST_METRICS), default=list(VAL_METRICS),
         help="comma-separated"),
    _own("log_dir", type=str, default="runs", affects_result=False,
         help="TensorBoard parent folder (run in <log_dir>/<prefix>)"),
    _own("tb_scenes", type=int, default=2, range=_NON_NEGATIVE, affects_result=False,
         help="validation scenes drawn to TensorBoard (0 = none)"),
    _own("rgb_bands", type=int, nargs=3, metavar=("R", "G", "B"), range=_NON_NEGATIVE, affects_result=False,
         help="band indices of the false-colour composites (default: nearest to 640/550/460 nm)"),
    _own("no_progress", switch=True, help="no tqdm progress bar", control=True),
)


def _test(name: str, **kw) -> Option:
    return Option(name, group=TEST, **kw)


#: Official training flags the official test script also accepts, unused there.
_LEFTOVERS = ("lr", "step_size", "eval_step", "finetuning_step", "weight_decay", "joint_loss")

#: Shared with ``test_CSAKD.py --score`` (``engine.score``), which has its own parser.
DIM_CUT = _test("dim_cut", type=int, default=0, range=_NON_NEGATIVE,
                help=f"pansharpening, reduced resolution: border pixels left out of the toolbox indices, as its "
                     f"indexes_evaluation.m cuts them ({TOOLBOX_DIM_CUT} in its demo; 0 = none)")

TEST_OPTIONS = (
    _test("test_mode", type=int, choices=(1, 2, 3), default=2,
          help="1: teacher, 2: student, 3: complexity of both (no data or checkpoint)"),
    _test("checkpoint", type=str,
          help="weights (this project's or an official .pth); default <run>/<teacher|student>/best.pth"),
    _test("split", choices=("test", "val"), default="test", help="split to evaluate"),
    # In a shared YAML file batch_size and snr are training settings (the training batch, 35 dB training noise): the
    # test script's flags of the same names are read from the command line only.
    _test("batch_size", type=int, default=1, range=_POSITIVE, from_yaml=False, help="test batch size (official 1)"),
    _test("results", type=str, metavar="DIR", help="write per_image.csv, summary.json and the predictions (.mat) here"),
    _test("raw_units", switch=True, help="save predictions de-normalised to the GT's raw units"),
    _test("metrics", type=comma_list(ALL_TEST_METRICS),
          help=f"comma-separated (default: all that the data give: HSI fusion {','.join(TEST_METRICS)}; "
               f"pansharpening {','.join(RR_METRICS)} at reduced resolution, {','.join(FR_METRICS)} at full)"),
    DIM_CUT,
    _test("tile", type=int, default=0, range=_NON_NEGATIVE,
          help="tiled inference: LR-HSI tile side in LR pixels (0 = off)"),
    _test("tile_overlap", type=int, default=4, range=_NON_NEGATIVE, help="overlap of neighbouring tiles in LR pixels"),
    _test("warmup", type=int, default=2, range=_NON_NEGATIVE, help="untimed forwards before timing"),
    _test("snr", type=float, default=0.0, range=Range(0, high=300), from_yaml=False,
          help="AWGN on the test LR-HSI in dB (0 = none, official)"),
    _test("json", type=str, help="--test_mode 3: also write the figures to this JSON file"),
    _test("backend", choices=("torch", "onnxruntime"), default="torch",
          help="torch: a weight file run by PyTorch; onnxruntime: an exported .onnx --checkpoint"),
    _test("precision", choices=("fp32", "bf16", "int8"),
          help="torch: fp32 (default) or bf16 weights and activations (refused on a CPU without native bf16); "
               "onnxruntime: must match the file (default: the file's). Not fp32: the fp32 network is also run on "
               "the same images"),
    _test("reference", type=str,
          help="fp32 network (weight file or .onnx) for the metrics' change; default: the same weights in fp32, or "
               "the source checkpoint recorded in the .onnx file"),
    _test("resume_ind", type=int, default=999, range=_NON_NEGATIVE,
          help="accepted for compatibility (official: >0 loads the checkpoint); the weights are always loaded"),
    *(dataclasses.replace(o, group=TEST, default=None, hidden=True) for o in TRAIN_OPTIONS if o.name in _LEFTOVERS),
)

#: The run options as the test script has them: no loader workers by default.
TEST_RUN_OPTIONS = tuple(dataclasses.replace(o, default=0) if o.name == "workers" else o for o in RUN_OPTIONS)
