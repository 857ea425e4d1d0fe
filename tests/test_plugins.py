"""Plugins: a strategy, a network family and a dataset kind, each one file outside the repository, loaded through
``plugins:`` in a YAML config, train and test; a bad plugin ends in one line naming it. The strategy is the code
block of docs/strategies.md, so that page cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import train_CSAKD

ROOT = Path(__file__).resolve().parents[1]

NETWORK = '''
"""A network family of one's own: upsampled LR-HSI plus a correction from both inputs (--arch blend)."""
import torch
import torch.nn.functional as F
from torch import nn

from models import NETWORKS
from models.network import FusionNetwork
from utils.config import Option, Range


class Blend(FusionNetwork):
    def __init__(self, bands, msi_bands, scale, blend_width):
        super().__init__()
        self.bands, self.msi_bands, self.scale = bands, msi_bands, scale
        self.mix = nn.Conv2d(bands + msi_bands, blend_width, 3, padding=1)
        self.out = nn.Conv2d(blend_width, bands, 3, padding=1)

    def forward(self, lrhsi, hrmsi):
        up = F.interpolate(lrhsi, scale_factor=self.scale, mode="bilinear", align_corners=False)
        feat = torch.relu(self.mix(torch.cat([up, hrmsi], 1)))
        return up + self.out(feat), feat


class BlendTeacher(Blend):
    role = "teacher"


class BlendStudent(Blend):
    role = "student"


CLASSES = {"teacher": BlendTeacher, "student": BlendStudent}


@NETWORKS.register("blend", classes=CLASSES, options=(Option("blend_width", type=int, default=6, range=Range(1),
                                                             group="network", help="blend: hidden width"),))
def build_blend(cfg, role):
    return CLASSES[role](cfg["bands"], cfg["msi_bands"], cfg["scale"], cfg["blend_width"])
'''

DATASET = '''
"""A dataset kind of one's own: two random spectra in vertical stripes (--dataset stripes)."""
import numpy as np

from data.datasets import SyntheticDataset
from data.options import DATASETS
from utils.config import Option, Range


@DATASETS.register("stripes", options=(Option("stripes_period", type=int, default=2, range=Range(1), group="data",
                                              help="stripes: width of a stripe in HR pixels"),))
class Stripes(SyntheticDataset):
    kind = "stripes"

    def __init__(self, cfg, split):
        super().__init__(cfg, split)
        self.period = cfg["stripes_period"]

    def make_cube(self, seed):
        spectra = np.random.default_rng(seed).uniform(0.1, 0.9, (2, self.bands))
        mask = ((np.arange(self.size) // self.period) % 2)[None, :, None]
        return np.broadcast_to(mask * spectra[0] + (1 - mask) * spectra[1],
                               (self.size, self.size, self.bands)).astype(np.float32)
'''


def strategy_code() -> str:
    """The one Python block of docs/strategies.md."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "strategies.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/strategies.md: expected exactly one python block (the complete strategy)"
    return blocks[0]


def write_plugins(folder: Path) -> Path:
    (folder / "l1kd.py").write_text(strategy_code())
    (folder / "blend_net.py").write_text(NETWORK)
    (folder / "stripes.py").write_text(DATASET)
    config = folder / "mine.yaml"
    config.write_text(textwrap.dedent(f"""
        plugins: [l1kd.py, blend_net.py, stripes.py]
        kd_strategy: l1kd
        l1kd_weight: 0.25
        arch: blend
        blend_width: 4
        dataset: stripes
        stripes_period: 2
        bands: 6
        msi_bands: 2
        image_size: 16
        crop_size: 8
        synthetic_scenes: [2, 1, 1]
        batch_size: 2
        eval_step: 1
        workers: 0
        device: cpu
        no_progress: true
        checkpoint_dir: {folder / 'ck'}
        log_dir: {folder / 'runs'}
        prefix: mine
    """))
    return config


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                          timeout=600)


def test_a_strategy_a_network_and_a_dataset_kind_from_plugin_files_train_and_test(tmp_path: Path) -> None:
    outside = tmp_path / "mine"
    outside.mkdir()
    config = write_plugins(outside)
    # run from a third folder: the plugins are found beside the YAML file, not in the working directory
    done = _run("train_CSAKD.py", "--config", str(config), "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = (outside / "ck" / "mine" / "config.yaml").read_text()
    assert "kd_strategy: l1kd" in saved and "blend_width: 4" in saved and "stripes_period: 2" in saved
    results = tmp_path / "results"
    done = _run("test_CSAKD.py", "--config", str(outside / "ck" / "mine" / "config.yaml"), "--results",
                str(results), cwd=outside)
    assert done.returncode == 0, done.stderr
    assert (results / "summary.json").is_file()
    helped = _run("train_CSAKD.py", "--plugins", str(outside / "l1kd.py"), "--help", cwd=tmp_path)
    assert "--l1kd_weight" in helped.stdout and "l1kd strategy" in helped.stdout


@pytest.mark.parametrize(("plugin", "message"), [
    ("nowhere.py", r"--plugins nowhere\.py: no such file"),
    ("broken.py", r"--plugins .*broken\.py: import failed: ZeroDivisionError: division by zero"),
    ("no_such_module_here", r"--plugins no_such_module_here: import failed: ModuleNotFoundError"),
])
def test_a_bad_plugin_is_one_line_naming_it(tmp_path: Path, capsys, plugin: str, message: str) -> None:
    (tmp_path / "broken.py").write_text("1 / 0\n")
    path = str(tmp_path / plugin) if plugin == "broken.py" else plugin
    assert train_CSAKD.main(["--plugins", path, "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1, err


def test_the_bench_runs_plugin_components_named_by_the_config(tmp_path: Path) -> None:
    """``benchmarks.kd`` imports the config's plugins before it checks the specs, so a plugin strategy is a spec."""
    outside = tmp_path / "mine"
    outside.mkdir()
    config = write_plugins(outside)
    config.write_text(config.read_text() + "epochs: 1\n")
    report = tmp_path / "kd.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.kd", "--config", str(config), "--strategies", "none",
                           "l1kd", "--seeds", "1", "--out", str(tmp_path / "bench"), "--json", str(report),
                           "--metrics", "psnr,sam"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    runs = json.loads(report.read_text())["runs"]
    assert [r["spec"] for r in runs] == ["none", "l1kd"]
    assert {r["config"]["arch"] for r in runs} == {"blend"} and runs[1]["config"]["kd_strategy"] == "l1kd"
