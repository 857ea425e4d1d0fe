"""Official-layout reader: shapes, normalisation, max/min, crop alignment, augmentation, misalignment keys."""

import numpy as np
import pytest
import torch

from data import DATA_DEFAULTS, add_data_args, build_dataset, crop_offsets, seed_worker
from data.aviris import write_entry

C, M, S, HR = 8, 4, 4, 32  # bands, MSI bands, scale, HR size of the tiny dataset


def block_mean(x: np.ndarray, s: int) -> np.ndarray:
    """(H, W, C) -> (H/s, W/s, C) mean over s×s blocks."""
    h, w, c = x.shape
    return x.reshape(h // s, s, w // s, s, c).mean(axis=(1, 3))


def make_entry(rng: np.random.Generator, hr: int = HR, stored: int | None = None):
    """A GT with unique raw values and inputs derived from it so alignment can be verified exactly:
    hrmsi4/6 = the first 4/6 bands of the [0,1]-scaled GT; lrhsi = block means of it; lrhsi{k} = block
    means of the scaled GT rolled by k pixels (distinct per k)."""
    stored = stored or hr
    gt = (rng.permutation(stored * stored * C).reshape(stored, stored, C) * 0.5 + 100.0).astype(np.float32)
    cut = gt[:hr, :hr]
    g01 = (cut - cut.min()) / (cut.max() - cut.min())
    pad = lambda a: np.pad(a, ((0, stored - hr), (0, stored - hr), (0, 0)))  # noqa: E731
    pad_lr = lambda a: np.pad(a, ((0, (stored - hr) // S), (0, (stored - hr) // S), (0, 0)))  # noqa: E731
    msi = {4: pad(g01[..., :4]), 6: pad(g01[..., :6])}
    lr = {k: pad_lr(block_mean(np.roll(g01, k, axis=1), S)) for k in range(4)}
    return gt, msi, lr


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("aviris")
    rng = np.random.default_rng(0)
    entries = ["train/Scene1_0", "train/Scene1_1", "val/Scene2_0"]
    for e in entries:
        write_entry(str(root), e, *make_entry(rng))
    # one entry stored as a per-entry folder with a larger GT (cut to image_size by the reader)
    gt, msi, lr = make_entry(rng, stored=HR + 8)
    folder = root / "test" / "Scene3_0"
    write_entry(str(folder), "", gt, msi, lr)
    (root / "train.txt").write_text("\n".join(entries[:2]) + "\n")
    (root / "val.txt").write_text(entries[2] + "\n")
    (root / "test.txt").write_text("# comment\n\ntest/Scene3_0\n")
    return root


def cfg_for(root, **kw):
    cfg = dict(root=str(root), train_file=str(root / "train.txt"), val_file=str(root / "val.txt"),
               test_file=str(root / "test.txt"), bands=C, msi_bands=M, scale=S, image_size=HR, crop_size=16)
    cfg.update(kw)
    return cfg


def test_val_sample_shapes_and_normalisation(dataset_root):
    ds = build_dataset(cfg_for(dataset_root), "val")
    assert len(ds) == 1
    s = ds[0]
    assert s["gt"].shape == (C, HR, HR) and s["hrmsi"].shape == (M, HR, HR) and s["lrhsi"].shape == (C, 8, 8)
    assert all(s[k].dtype == torch.float32 for k in ("gt", "hrmsi", "lrhsi"))
    assert s["name"] == "val/Scene2_0"
    raw = np.load(dataset_root / "val/Scene2_0GT.npz.npy")
    assert s["maxv"] == pytest.approx(float(raw.max())) and s["minv"] == pytest.approx(float(raw.min()))
    expected = 2 * (raw - raw.min()) / (raw.max() - raw.min()) - 1
    np.testing.assert_allclose(s["gt"].numpy().transpose(1, 2, 0), expected, atol=1e-6)
    assert s["gt"].min() == -1 and s["gt"].max() == 1
    with np.load(dataset_root / "val/Scene2_0lrhsi.npz") as z:
        np.testing.assert_allclose(s["lrhsi"].numpy().transpose(1, 2, 0), 2 * z["lrhsi"] - 1, atol=1e-6)


def test_folder_layout_and_image_size_cut(dataset_root):
    s = build_dataset(cfg_for(dataset_root), "test")[0]
    assert s["gt"].shape == (C, HR, HR) and s["lrhsi"].shape == (C, HR // S, HR // S)
    raw = np.load(dataset_root / "test/Scene3_0/GT.npz.npy")[:HR, :HR]
    assert s["maxv"] == pytest.approx(float(raw.max()))


@pytest.mark.parametrize("msi_bands", [4, 6])
def test_train_crops_aligned_and_augmented_identically(dataset_root, msi_bands):
    ds = build_dataset(cfg_for(dataset_root, msi_bands=msi_bands), "train")
    crops = set()
    for i in range(24):
        s = ds[i % len(ds)]
        g01 = (s["gt"].numpy().transpose(1, 2, 0) + 1) / 2
        lr01 = (s["lrhsi"].numpy().transpose(1, 2, 0) + 1) / 2
        assert g01.shape == (16, 16, C) and lr01.shape == (4, 4, C)
        # each LR pixel is exactly the mean of the HR block it came from, after any flip/rotation
        np.testing.assert_allclose(lr01, block_mean(g01, S), atol=2e-6)
        # the HR-MSI received the same crop, flips and rotation as the GT
        np.testing.assert_allclose(s["hrmsi"].numpy(), s["gt"].numpy()[:msi_bands], atol=2e-6)
        crops.add(s["gt"].numpy().tobytes())
    assert len(crops) > 12  # crops and augmentations vary


def test_mis_pix_selects_the_misaligned_lr(dataset_root):
    for k in range(4):
        s = build_dataset(cfg_for(dataset_root, mis_pix=k), "val")[0]
        with np.load(dataset_root / "val/Scene2_0lrhsi.npz") as z:
            stored = z["lrhsi" if k == 0 else f"lrhsi{k}"]
        np.testing.assert_allclose(s["lrhsi"].numpy().transpose(1, 2, 0), 2 * stored - 1, atol=1e-6)


def test_mixed_align_opt_draws_all_four_variants(dataset_root):
    ds = build_dataset(cfg_for(dataset_root, mixed_align_opt=1, crop_size=HR), "train")
    seen = set()
    for _ in range(40):
        s = ds[0]
        g01 = (s["gt"].numpy().transpose(1, 2, 0) + 1) / 2
        lr01 = (s["lrhsi"].numpy().transpose(1, 2, 0) + 1) / 2
        # variant k = block means of the GT rolled by k pixels along the stored width axis; identify k
        # by undoing each candidate flip/rotation of the augmented sample
        for k in range(4):
            for rot in range(4):
                for flip in (False, True):
                    g = np.rot90(g01[:, ::-1] if flip else g01, rot)
                    cand = np.rot90(block_mean(np.roll(g, k, axis=1), S), -rot)
                    cand = cand[:, ::-1] if flip else cand
                    if np.allclose(cand, lr01, atol=2e-6):
                        seen.add(k)
    assert seen == {0, 1, 2, 3}
    # validation ignores the mixing and uses --mis_pix
    assert build_dataset(cfg_for(dataset_root, mixed_align_opt=1), "val")[0]["lrhsi"].shape == (C, 8, 8)


def test_crop_grid_default_and_official():
    assert crop_offsets(256, 128, 4) == list(range(0, 129, 4))
    assert crop_offsets(256, 128, 4, "official") == list(range(0, 128, 4))
    assert crop_offsets(64, 64, 4, "official") == [0]  # falls back instead of an empty grid
    with pytest.raises(ValueError, match="crop_size 30 must be divisible by the scale 4"):
        crop_offsets(64, 30, 4)


@pytest.mark.parametrize("compat, sees_last", [(None, True), ("official", False)])
def test_dataset_crop_grid_reaches_last_rows_only_by_default(dataset_root, compat, sees_last):
    ds = build_dataset(cfg_for(dataset_root, crop_size=HR - S, compat=compat), "train")
    raw = np.load(dataset_root / "train/Scene1_0GT.npz.npy")
    last = set(np.round(2 * (raw[-S:] - raw.min()) / (raw.max() - raw.min()) - 1, 5).ravel().tolist())
    hit = any(set(np.round(ds[0]["gt"].numpy(), 5).ravel().tolist()) & last for _ in range(20))
    assert hit == sees_last


def test_augmentation_reproducible_with_seed_and_workers(dataset_root):
    def run(num_workers):
        ds = build_dataset(cfg_for(dataset_root, seed=7), "train")
        loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=True, num_workers=num_workers,
                                             worker_init_fn=seed_worker,
                                             generator=torch.Generator().manual_seed(7))
        return [b["gt"] for _ in range(2) for b in loader]

    a, b = run(0), run(0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c, d = run(2), run(2)
    assert all(torch.equal(x, y) for x, y in zip(c, d, strict=True))


def test_defaults_and_flags():
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=1)  # a script's own shared flag is kept, not duplicated
    add_data_args(p)
    args = vars(p.parse_args([]))
    official = dict(root="../../Fusion_data", train_file="./data/train.txt", val_file="./data/val.txt",
                    test_file="./data/test.txt", msi_bands=4, mis_pix=0, mixed_align_opt=0, crop_size=128,
                    image_size=256, bands=172)
    for k, v in official.items():
        assert args[k] == v == DATA_DEFAULTS[k]
    assert args["seed"] == 1 and args["scale"] == 4
    assert set(DATA_DEFAULTS) <= set(args)


def test_missing_split_file_is_clear_only_when_used(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--train_file '\./data/train\.txt': no such file"):
        build_dataset({**DATA_DEFAULTS, "root": str(tmp_path)}, "train")
    with pytest.raises(FileNotFoundError, match=r"--root .*nowhere: no such folder"):
        build_dataset({**DATA_DEFAULTS, "root": str(tmp_path / "nowhere")}, "train")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match=r"empty\.txt: the split is empty"):
        build_dataset(dict(root=str(tmp_path), train_file=str(tmp_path / "empty.txt")), "train")


def _bad_root(tmp_path, **change):
    rng = np.random.default_rng(1)
    gt, msi, lr = make_entry(rng)
    gt = change.get("gt", gt)
    msi = change.get("msi", msi)
    lr = change.get("lr", lr)
    write_entry(str(tmp_path), "x/E_0", gt, msi, lr)
    (tmp_path / "split.txt").write_text("x/E_0\n")
    return build_dataset(cfg_for(tmp_path, val_file=str(tmp_path / "split.txt")), "val")


def test_bad_entries_give_one_clear_message(tmp_path):
    rng = np.random.default_rng(1)
    gt, msi, lr = make_entry(rng)
    with pytest.raises(ValueError, match=r"E_0hrmsi\.npz: key 'hrmsi4' missing \(found \['hrmsi6'\]\)"):
        _bad_root(tmp_path / "a", msi={6: msi[6]})[0]
    with pytest.raises(ValueError, match=r"E_0GT\.npz\.npy: GT has shape \(32, 32, 7\), expected \(any, any, 8\)"):
        _bad_root(tmp_path / "b", gt=gt[..., :7])[0]
    with pytest.raises(ValueError, match=r"lrhsi \(ratio 4\) has shape \(7, 8, 8\), expected \(8, 8, 8\)"):
        _bad_root(tmp_path / "c", lr={0: lr[0][:7]})[0]
    bad = gt.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"E_0GT\.npz\.npy: GT has 1 NaN/Inf value"):
        _bad_root(tmp_path / "d", gt=bad)[0]
    ds = _bad_root(tmp_path / "e")
    (tmp_path / "e" / "x" / "E_0lrhsi.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*E_0lrhsi\.npz"):
        ds[0]
