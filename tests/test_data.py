import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data import FolderRGBD, SyntheticRGBD, load_dataset, make_batch, make_labelled_batch
from benchmark.data.synthetic import SCENE_KINDS


def test_synthetic_is_deterministic_and_seeded():
    a, b = SyntheticRGBD("test")[5], SyntheticRGBD("test")[5]
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth) and np.array_equal(a.gt, b.gt)
    c = SyntheticRGBD("test", seed=1)[5]
    assert not np.array_equal(a.rgb, c.rgb)
    assert SyntheticRGBD("test").manifest_sha256() == SyntheticRGBD("test").manifest_sha256()
    assert not np.array_equal(SyntheticRGBD("train")[0].rgb, SyntheticRGBD("test")[0].rgb)


def test_synthetic_scenes_depth_marks_salient_object():
    ds = SyntheticRGBD("test")
    for i in range(2 * len(SCENE_KINDS)):
        s = ds[i]
        fg = s.gt > 127
        assert 0.01 < fg.mean() < 0.5
        if s.name.endswith("noisy_depth"):  # depth is unreliable there: sensor holes read 0
            assert (s.depth == 0).mean() > 0.005, s.name
        else:  # the salient object is the nearest: brighter depth than the rest of the scene
            assert np.median(s.depth[fg]) > np.median(s.depth[~fg]) + 10, s.name


def test_camouflage_colour_is_ambiguous_contrast_is_not():
    ds = SyntheticRGBD("test")

    def colour_gap(s):
        fg = s.gt > 127
        return np.abs(s.rgb[fg].mean(0).astype(float) - s.rgb[~fg].mean(0)).max()

    camo = [colour_gap(ds[i]) for i in range(len(ds)) if ds[i].name.endswith("camouflage")]
    contrast = [colour_gap(ds[i]) for i in range(len(ds)) if ds[i].name.endswith("contrast")]
    assert np.median(camo) < 20 < np.median(contrast)


def test_make_batch_resizes_to_network_resolution_and_keeps_gt():
    ds = SyntheticRGBD("test")
    b = make_batch([ds[0], ds[1]], 64)
    assert b.rgb.shape == (2, 3, 64, 64) and b.depth.shape == (2, 1, 64, 64) and b.target.shape == (2, 1, 64, 64)
    assert 0 <= b.rgb.min() and b.rgb.max() <= 1 and set(b.target.unique().tolist()) <= {0.0, 1.0}
    assert b.gts[0].shape == (160, 160)


def _write_dataset(root, name="NJU2K", stems=("a", "b"), size=(20, 16)):
    for sub in ("RGB", "depth", "GT"):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
    for s in stems:
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(root / name / "RGB" / f"{s}.jpg")
        Image.fromarray(np.full((size[1], size[0]), 100, np.uint8)).save(root / name / "depth" / f"{s}.png")
        Image.fromarray(np.full((size[1], size[0]), 255, np.uint8)).save(root / name / "GT" / f"{s}.png")
    return root


def test_folder_dataset_pairs_by_stem(tmp_path):
    ds = load_dataset("NJU2K", root=_write_dataset(tmp_path))
    assert len(ds) == 2
    s = ds[1]
    assert s.name == "b" and s.rgb.shape == (16, 20, 3) and s.depth.shape == (16, 20) and s.gt.max() == 255
    assert len(ds.manifest_sha256()) == 64


def test_folder_dataset_missing_partner_names_file(tmp_path):
    root = _write_dataset(tmp_path)
    (root / "NJU2K" / "depth" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"RGB/b\.jpg.*no partner"):
        FolderRGBD(root, "NJU2K")


def test_folder_dataset_size_mismatch_and_unreadable(tmp_path):
    root = _write_dataset(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "NJU2K" / "GT" / "a.png")
    (root / "NJU2K" / "depth" / "b.png").write_bytes(b"not a png")
    ds = FolderRGBD(root, "NJU2K")
    with pytest.raises(ValueError, match=r"size mismatch: .*GT/a\.png"):
        ds[0]
    with pytest.raises(ValueError, match=r"unreadable image .*depth/b\.png"):
        ds[1]


def test_folder_dataset_reads_jldcf_test_list(tmp_path):
    root = _write_dataset(tmp_path, stems=("a", "b", "c"))
    (root / "NJU2K" / "test.lst").write_text("RGB/c.jpg depth/c.png\nRGB/a.jpg depth/a.png GT/a.png\n")
    ds = FolderRGBD(root, "NJU2K")
    assert [ds[i].name for i in range(len(ds))] == ["c", "a"]
    (root / "NJU2K" / "test.lst").write_text("RGB/z.jpg depth/z.png\n")
    with pytest.raises(FileNotFoundError, match=r"test\.lst:1: missing file"):
        FolderRGBD(root, "NJU2K")


def test_an_unlisted_set_is_read_as_rgbd_by_its_folders_in_any_common_naming(tmp_path):
    root = _write_dataset(tmp_path, name="COME15K")
    for old, new in (("RGB", "Image"), ("depth", "Depth"), ("GT", "mask")):
        (root / "COME15K" / old).rename(root / "COME15K" / new)
    ds = load_dataset("COME15K", root=root, invert_depth=True)
    assert ds.task == "saliency" and len(ds) == 2 and ds[0].depth.max() == 255 - 100
    assert load_dataset("COME15K-rgb2depth", root=root).query == "rgb"


def test_a_partial_or_ambiguous_rgbd_layout_is_an_error_naming_what_is_there(tmp_path):
    root = _write_dataset(tmp_path, name="NJUD")
    (root / "NJUD" / "depth").rename(root / "NJUD" / "disparity")
    with pytest.raises(ValueError, match=r"NJUD: has RGB, GT but no depth folder; .*depth: depth/Depths"):
        load_dataset("NJUD", root=root)
    (root / "NJUD" / "disparity").rename(root / "NJUD" / "depth")
    (root / "NJUD" / "Mask").mkdir()
    with pytest.raises(ValueError, match=r"two folders for one role \{'GT': \['GT', 'Mask'\]\}"):
        load_dataset("NJUD", root=root)
    classes = tmp_path / "animals"
    (classes / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(classes / "cat" / "a.png")
    assert load_dataset("animals", root=tmp_path).task == "classification"
    with pytest.raises(ValueError, match="invert_depth applies to RGB-D folder datasets only"):
        load_dataset("animals", root=tmp_path, invert_depth=True)


def test_folder_dataset_needs_root():
    with pytest.raises(ValueError, match="DATA="):
        load_dataset("NJU2K")


def test_rgb_depth_retrieval_pairs_each_query_with_its_own_partner():
    base = SyntheticRGBD("test")
    for name, query, other in (("synthetic-rgb2depth", "rgb", "depth"), ("synthetic-depth2rgb", "depth", "rgb")):
        ds = load_dataset(name)
        assert ds.name == name and ds.query == query and ds.task == "classification" and len(ds) == len(base)
        item = ds[5]
        assert item.label == 5 and getattr(item, other) is None
        assert np.array_equal(getattr(item, query), getattr(base[5], query))
        batch = make_labelled_batch([ds[i] for i in range(3)], 32)
        assert getattr(batch, other) is None and getattr(batch, query).shape == (3, 3 if query == "rgb" else 1, 32, 32)
        gallery = ds.gallery(32)
        assert torch.equal(gallery[5:6], getattr(make_batch([base[5]], 32), other))
    assert load_dataset("synthetic-rgb2depth").manifest_sha256() != load_dataset("synthetic-depth2rgb").manifest_sha256()
    with pytest.raises(ValueError, match="'shapes' is not one"):
        load_dataset("shapes-rgb2depth")
