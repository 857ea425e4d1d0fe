"""Cost of the integrity checks on every checkpoint load (utils.checkpoint, "Integrity").

    python -m benchmarks.integrity [--mb 100]

Writes a weight file of ``--mb`` MB of float32 tensors to a temporary folder and times, with the file in
the page cache: ``torch.load`` alone, the archive CRC check, the tensor digest, and ``read_checkpoint``
(all of them together). Prints seconds (min and median of 5 calls).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from benchmarks.measure import time_calls
from utils.checkpoint import DIGEST_KEY, FORMAT, FORMAT_VERSION, read_checkpoint, tensor_digest, verify_archive
from utils.fileio import atomic_torch_save


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=100, help="file size in MB (10^6 bytes)")
    args = p.parse_args(argv)
    state = {f"w{i}": torch.randn(args.mb * 25_000) for i in range(10)}  # 10 tensors, 4-byte floats
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.pth")
        atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state,
                           DIGEST_KEY: tensor_digest(state)}, path)
        cpu = torch.device("cpu")
        print(f"{os.path.getsize(path) / 1e6:.0f} MB weight file, page cache warm; seconds (min / median of 5)")
        for name, fn in (("torch.load", lambda: torch.load(path, weights_only=True)),
                         ("archive CRCs (verify_archive)", lambda: verify_archive(path)),
                         ("tensor digest (sha256)", lambda: tensor_digest(state)),
                         ("read_checkpoint (all)", lambda: read_checkpoint(path))):
            t = time_calls(fn, cpu)
            print(f"  {name:<30}{t['min']:8.3f}{t['median']:8.3f}")


if __name__ == "__main__":
    main()
