"""Distributed training (DistributedDataParallel, gloo, 2 CPU processes spawned by torch.multiprocessing):
a DDP step equals one process's step over the global batch, a non-finite loss on one process skips the
step everywhere, sharded validation equals single-process validation, a killed DDP run resumes to the
weights of an uninterrupted one, SIGTERM on one process stops both at the same step with a state that resumes
exactly, and a 2-process state resumes in one process."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_engine_step import TINY, tiny_batch, tiny_cfg
from test_train_run import TINY_YAML, assert_same_weights, weights

WORLD = 2
# Single-process references run on one thread like the workers, so that both sides pick the same kernels; the
# comparisons still allow for summation order (see the step test), which also differs between CPU kinds.
pytestmark = pytest.mark.usefixtures("one_thread")
# 8 training scenes: two steps of 2 × 2 per epoch; 3 validation scenes: an odd number, split 2 + 1.
DDP_YAML = TINY_YAML.replace("synthetic_scenes: [4, 2, 2]", "synthetic_scenes: [8, 3, 2]")


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    """A rendezvous port nobody listens on, never handed out twice in this session, below the ephemeral range:
    a port from bind(0) lies inside that range, where the client sockets of an earlier process group can take it
    before the store listens on it (EADDRINUSE, seen in CI)."""
    rng, low = random.Random(), _ephemeral_low()
    for _ in range(200):
        port = rng.randrange(20000, low) if low > 20100 else rng.randrange(1024, 65536)  # no room below: any
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free TCP port found for the test's process-group rendezvous")


def _join(rank: int, port: int) -> None:
    """Make this process rank ``rank`` of a torchrun-like environment (read by engine.runtime)."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")


def _spawn(fn, *args, limit_s: float = 180.0) -> None:
    """Run ``fn(rank, port, *args)`` in WORLD processes; a process group that hangs fails the test."""
    context = mp.start_processes(fn, args=(_free_port(), *args), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + limit_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in context.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail(f"the {WORLD} processes of {fn.__name__} did not finish within {limit_s} s")


# ---------------------------------------------------------------------------------------------------------------------
# One step


def _grads(cot) -> dict[str, dict[str, torch.Tensor]]:
    """The gradients the last step's optimisers consumed (they live until the next step's zero_grad)."""
    return {role: {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
            for role, net in cot.trained.items()}


def _assert_same_gradient(got: torch.Tensor, want: torch.Tensor, msg: str) -> None:
    """Equal up to float summation order: the tolerance scales with the tensor's largest entry, because the
    rounding of a sum is relative to its summands, not to the (possibly ~0) result."""
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale + 1e-12, msg=msg)


def _step_worker(rank: int, port: int, out: str) -> None:
    """Rank ``rank``: one step on its half of a global batch of 4, then a step with a NaN on process 1 only."""
    from engine.cotrainer import CoTrainer
    from engine.runtime import init_distributed
    from models import Student, Teacher

    _join(rank, port)
    dist, device = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        teacher, student = Teacher(**TINY), Student(student_layers="1111", **TINY)
        cot = CoTrainer(tiny_cfg(snr=0.0), student, teacher, device=device, dist=dist)
        shard = {k: v[2 * rank:2 * rank + 2] for k, v in tiny_batch(b=2 * WORLD).items()}
        first = cot.step(shard)
        after_first = {r: {k: v.clone() for k, v in n.state_dict().items()} for r, n in cot.trained.items()}
        grads_first = _grads(cot)
        bad = {k: v.clone() for k, v in shard.items()}
        if rank == 1:
            bad["gt"][0, 0, 0, 0] = float("nan")
        second = cot.step(bad)
        after_second = {r: n.state_dict() for r, n in cot.trained.items()}
        torch.save({"first": first, "second": second, "after_first": after_first, "after_second": after_second,
                    "grads_first": grads_first}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.close()


def test_ddp_step_equals_single_process_step_and_nonfinite_skips_everywhere(ddp_runs: Path) -> None:
    """Two processes with 2 samples each compute the gradient of one process with the 4 samples, and step
    to the same weights on both processes. Every objective is a mean over the batch and the per-process
    batches are equal, so DDP's average of the per-process gradients is the global batch's gradient. The
    AWGN is off (--snr 0): its power is measured over the whole batch tensor, which differs between a shard
    and the global batch; explicit batches are used, so no augmentation is drawn.

    Gradients are compared before the optimiser, not the weights after it: Adam's first update is about
    lr·sign(g), so a ~0 gradient whose sign depends on the summation order (kernels, threads, the CPU's
    vector width) would move a weight by 2·lr and fail a weight comparison on some hosts. The processes'
    weights must agree exactly (they applied the same averaged gradient).

    Then a NaN in process 1's ground truth only: both processes skip both networks' steps."""
    from engine.cotrainer import CoTrainer
    from models import Student, Teacher

    torch.manual_seed(0)
    teacher, student = Teacher(**TINY), Student(student_layers="1111", **TINY)
    single = CoTrainer(tiny_cfg(snr=0.0), student, teacher)
    single.step(tiny_batch(b=2 * WORLD))
    want = _grads(single)
    results = [torch.load(ddp_runs / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for res in results:
        assert res["first"]["teacher/skipped"] == 0.0 and res["first"]["student/skipped"] == 0.0
        for role, grads in want.items():
            assert set(res["grads_first"][role]) == set(grads), role
            for k, g in grads.items():
                _assert_same_gradient(res["grads_first"][role][k], g, f"{role} {k}")
        assert res["second"]["teacher/skipped"] == 1.0 and res["second"]["student/skipped"] == 1.0
        for role in ("teacher", "student"):
            for k, v in res["after_second"][role].items():
                assert torch.equal(v, res["after_first"][role][k]), f"{role} {k} changed in a skipped step"
    for role, state in results[0]["after_first"].items():
        for k, v in state.items():
            assert torch.equal(v, results[1]["after_first"][role][k]), f"{role} {k} differs between the processes"
    import math

    assert math.isfinite(results[0]["second"]["teacher/loss"]) and math.isnan(results[1]["second"]["teacher/loss"])


# ---------------------------------------------------------------------------------------------------------------------
# Whole runs


def _run_args(tmp_path: Path, prefix: str, *extra: str) -> list[str]:
    cfg = tmp_path / "ddp.yaml"
    if not cfg.exists():
        cfg.write_text(DDP_YAML + f"log_dir: {tmp_path / 'runs'}\ncheckpoint_dir: {tmp_path / 'ck'}\n")
    return ["--config", str(cfg), "--epochs", "2", "--prefix", prefix, *extra]


def _run_worker(rank: int, port: int, ports: list[int], tmp: str) -> None:
    """The step worker, an uninterrupted 2-epoch run, then the same run killed (os._exit) in the middle of
    epoch 1; each with a fresh rendezvous port (a finished group's store may still be closing)."""
    import train_CSAKD
    from engine.cotrainer import CoTrainer
    from engine.train import train

    _step_worker(rank, port, tmp)
    os.environ["MASTER_PORT"] = str(ports[0])
    real, losses = CoTrainer.step, []

    def recorded(self, batch, noise=None, **kwargs):  # this process's per-step losses, for the logged epoch means
        stats = real(self, batch, noise, **kwargs)
        losses.append(stats["student/loss"])
        return stats

    CoTrainer.step = recorded
    summary = train(train_CSAKD.load_config(_run_args(Path(tmp), "full")))
    CoTrainer.step = real
    torch.save(summary, os.path.join(tmp, f"summary{rank}.pt"))
    torch.save(losses, os.path.join(tmp, f"losses{rank}.pt"))
    calls = {"n": 0}

    def killed(self, batch, noise=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 1, second step: both processes die without saving anything
            os._exit(0)
        return real(self, batch, noise, **kwargs)

    CoTrainer.step = killed
    os.environ["MASTER_PORT"] = str(ports[1])
    train(train_CSAKD.load_config(_run_args(Path(tmp), "cut")))


def _resume_worker(rank: int, port: int, ports: list[int], tmp: str) -> None:
    """Resume the killed run; then a run that only process 1 receives SIGTERM in (epoch 1, first step): both
    processes stop after that step with one state, which the same 2 processes resume."""
    import train_CSAKD
    from engine.cotrainer import CoTrainer
    from engine.state import load_training_state
    from engine.train import train
    from utils.interrupts import Interrupted

    _join(rank, port)
    train(train_CSAKD.load_config(_run_args(Path(tmp), "cut", "--resume")))
    real, calls = CoTrainer.step, {"n": 0}

    def step(self, batch, noise=None, **kwargs):
        calls["n"] += 1
        if rank == 1 and calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, batch, noise, **kwargs)

    CoTrainer.step = step
    os.environ["MASTER_PORT"] = str(ports[0])
    try:
        train(train_CSAKD.load_config(_run_args(Path(tmp), "sig")))
    except Interrupted as exc:
        state = load_training_state(Path(tmp) / "ck" / "sig" / "state.pth")
        torch.save({"code": exc.exit_code, "message": str(exc), "steps": calls["n"],
                    "saved": (state["epoch"], state.get("position"))}, os.path.join(tmp, f"sig{rank}.pt"))
    CoTrainer.step = real
    os.environ["MASTER_PORT"] = str(ports[1])
    train(train_CSAKD.load_config(_run_args(Path(tmp), "sig", "--resume")))


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    _spawn(_run_worker, [_free_port(), _free_port()], str(tmp))
    _spawn(_resume_worker, [_free_port(), _free_port()], str(tmp))
    return tmp


def test_ddp_run_killed_and_resumed_ends_where_an_uninterrupted_one_does(ddp_runs: Path) -> None:
    """--deterministic DDP run: killed during epoch 1, resumed from state.pth (epoch 0), same final weights;
    only the main process wrote the run folder (one TensorBoard event file per run)."""
    from engine.state import load_training_state

    full, cut = ddp_runs / "ck" / "full", ddp_runs / "ck" / "cut"
    for role in ("teacher", "student"):
        assert_same_weights(full / role / "last.pth", cut / role / "last.pth")
    state = load_training_state(cut / "state.pth")
    assert state["epoch"] == 1 and state["world_size"] == WORLD
    assert len(list((ddp_runs / "runs" / "full").glob("events.out.tfevents.*"))) == 1


def test_ddp_logged_losses_are_means_over_every_process(ddp_runs: Path) -> None:
    """TensorBoard's epoch loss of a DDP run is the mean over all processes' batches, not the main process's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    per_rank = [torch.load(ddp_runs / f"losses{r}.pt") for r in range(WORLD)]
    steps = len(per_rank[0]) // 2  # 2 epochs
    acc = EventAccumulator(str(ddp_runs / "runs" / "full"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [e.value for e in acc.Scalars("losses/student/total")]
    expected = [sum(sum(r[e * steps:(e + 1) * steps]) for r in per_rank) / (steps * WORLD) for e in range(2)]
    assert logged == pytest.approx(expected, rel=1e-6)
    assert per_rank[0] != per_rank[1]  # the processes saw different batches: the check can tell them apart


def test_ddp_sigterm_on_one_process_stops_all_at_the_same_step_and_resumes_exactly(ddp_runs: Path) -> None:
    records = [torch.load(ddp_runs / f"sig{r}.pt", weights_only=False) for r in range(WORLD)]
    assert [r["code"] for r in records] == [143, 143] and [r["steps"] for r in records] == [3, 3]
    assert records[0]["saved"] == (0, 1)  # after epoch 0, plus 1 step of epoch 1
    assert records[0]["message"].startswith("interrupted by SIGTERM at step 1 of 2 of epoch 1: resumable state")
    for role in ("teacher", "student"):
        assert_same_weights(ddp_runs / "ck" / "full" / role / "last.pth", ddp_runs / "ck" / "sig" / role / "last.pth")


def test_ddp_validation_of_odd_scene_count_equals_single_process(ddp_runs: Path) -> None:
    """The DDP run's last validation (3 scenes, split 2 + 1 over the processes, gathered) equals one process
    validating the same weights; every process reports the same value."""
    import train_CSAKD
    from engine.evaluate import validate, validate_bicubic
    from engine.loaders import build_loader
    from models import build_model

    summaries = [torch.load(ddp_runs / f"summary{r}.pt", weights_only=False) for r in range(WORLD)]
    assert summaries[0]["val"] == summaries[1]["val"] and summaries[0]["world_size"] == WORLD
    cfg = train_CSAKD.load_config(_run_args(ddp_runs, "single"))
    nets = {}
    for role in ("teacher", "student"):
        nets[role] = build_model(cfg, role)
        nets[role].load_state_dict(weights(ddp_runs / "ck" / "full" / role / "last.pth"))
    loader = build_loader(cfg, "val", 2)
    assert len(loader.dataset) == 3
    single, _ = validate(nets, loader, cfg, torch.device("cpu"))
    for role, values in single.items():
        for k, v in values.items():
            assert summaries[0]["val"][role][k] == pytest.approx(v, rel=1e-6, abs=1e-9), (role, k)
    # The end-of-training bicubic baseline (the SAM warning's reference) is gathered the same way.
    assert summaries[0]["bicubic_val"] == summaries[1]["bicubic_val"]
    for k, v in validate_bicubic(loader, cfg, torch.device("cpu")).items():
        assert summaries[0]["bicubic_val"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_state_saved_by_two_processes_resumes_in_one(ddp_runs: Path) -> None:
    """A state written by 2 processes continues in 1 (plain weights, no DDP names): one more epoch."""
    import train_CSAKD
    from engine.state import load_training_state
    from engine.train import train

    shutil.copytree(ddp_runs / "ck" / "full", ddp_runs / "ck" / "more")  # the other tests read "full"
    args = _run_args(ddp_runs, "more", "--resume")
    args[args.index("--epochs") + 1] = "3"
    summary = train(train_CSAKD.load_config(args))
    assert summary["epoch"] == 2 and summary["world_size"] == 1
    state = load_training_state(ddp_runs / "ck" / "more" / "state.pth")
    assert state["world_size"] == 1 and state["iteration"] == 4 + 4  # 2 DDP epochs of 2 steps, then 4 alone


def _hkd_cfg() -> dict:
    return {**tiny_cfg(snr=0.0), "kd_strategy": "hkd", "bands": TINY["bands"], "hkd_acf": "global"}


def _hkd_worker(rank: int, port: int, out: str) -> None:
    """Rank ``rank``: one HKD step (intermediate heads fed by forward hooks) on its half of a global batch of 4."""
    from engine.cotrainer import CoTrainer
    from engine.runtime import init_distributed
    from models import Student, Teacher

    _join(rank, port)
    dist, device = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        teacher, student = Teacher(**TINY, hkd_heads=2), Student(student_layers="1111", **TINY, hkd_heads=2)
        cot = CoTrainer(_hkd_cfg(), student, teacher, device=device, dist=dist)
        cot.step({k: v[2 * rank:2 * rank + 2] for k, v in tiny_batch(b=2 * WORLD).items()})
        torch.save(_grads(cot), os.path.join(out, f"hkd{rank}.pt"))
    finally:
        dist.close()


def test_ddp_hkd_step_with_hooked_heads_equals_single_process_step(tmp_path: Path) -> None:
    """The HKD heads run in a hook at the end of each network's forward, inside DistributedDataParallel's forward:
    their gradients (and every other) are averaged like the backbone's, as one process over the global batch."""
    from engine.cotrainer import CoTrainer
    from models import Student, Teacher

    _spawn(_hkd_worker, str(tmp_path))
    torch.manual_seed(0)
    teacher, student = Teacher(**TINY, hkd_heads=2), Student(student_layers="1111", **TINY, hkd_heads=2)
    single = CoTrainer(_hkd_cfg(), student, teacher)
    single.step(tiny_batch(b=2 * WORLD))
    want = _grads(single)
    assert any(k.startswith("inter_heads.") for k in want["student"])
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"hkd{rank}.pt", weights_only=True)
        for role, grads in want.items():
            assert set(got[role]) == set(grads), role
            for k, g in grads.items():
                _assert_same_gradient(got[role][k], g, f"{role} {k}")
