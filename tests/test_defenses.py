"""Defenses: the contract (shape, range, untouched modality), BPDA and EOT, parity with ART where a
defense is ours, the defended model, and bad suite input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from art.defences.preprocessor import SpatialSmoothing

from benchmark.suite import load_suite
from defenses import DEFENSES, DefendedModel, ExpectationOverTransformation, build_defense

NAMES = [n for n in DEFENSES if n != "none" and not getattr(DEFENSES[n], "wraps_model", False)]  # input transforms


def _inputs(n: int = 2, size: int = 24, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g, dtype=dtype), torch.rand(n, 1, size, size, generator=g, dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_each_defense_keeps_shape_dtype_range_and_the_other_modality(name):
    d = build_defense(name)
    rgb, depth = _inputs(dtype=torch.float64)
    torch.manual_seed(0)
    out = d(rgb, depth)
    for x, y in ((rgb, out.rgb), (depth, out.depth)):
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert y.min() >= 0 and y.max() <= 1
    changed = {m for m, x, y in (("rgb", rgb, out.rgb), ("depth", depth, out.depth)) if not torch.equal(x, y)}
    acted = {"rgb", "depth"} if d.modality == "rgbd" else {d.modality}
    # a patch defense changes only where it locates a patch (random noise may have none)
    assert changed <= acted if out.mask is not None else changed == acted, changed
    # a rectangle shaped input (the resize attack view) and a missing modality (a classifier's query)
    if d.needs_rgbd:
        with pytest.raises(ValueError, match="both modalities"):
            d(_inputs(size=17)[0], None)
    else:
        assert d(*(_inputs(size=17)[0], None) if d.acts_on("rgb") else (None, _inputs(size=17)[1])) is not None


@pytest.mark.parametrize("name", ["jpeg", "bits", "tvm", "jedi"])
def test_bpda_gives_the_identity_gradient_through_a_non_differentiable_defense(name):
    d = build_defense(name, modality="rgbd")
    assert not d.differentiable
    rgb, depth = (x.requires_grad_() for x in _inputs())
    out = d(rgb, depth)
    exact = d.purify(rgb.detach())
    assert torch.allclose(out.rgb, exact.to(rgb.dtype), atol=1e-6) if not d.randomized else out.rgb.shape == exact.shape
    w = torch.randn_like(out.rgb)
    (out.rgb * w).sum().backward()
    assert torch.equal(rgb.grad, w)  # BPDA with the identity: d out / d x = I


def test_median_matches_arts_spatial_smoothing_and_has_an_exact_gradient():
    rgb, _ = _inputs(n=2, size=20, dtype=torch.float64)
    for window in (3, 5):
        ours = build_defense("median", window=window).purify(rgb)
        art, _ = SpatialSmoothing(window_size=window, channels_first=True)(rgb.numpy())
        np.testing.assert_allclose(ours.numpy(), art, atol=1e-12)
    x = rgb.clone().requires_grad_()
    build_defense("median").purify(x).sum().backward()
    assert x.grad.sum().item() == pytest.approx(x.numel())  # each output selects one input pixel
    assert (x.grad > 0).float().mean() < 1  # ... so some pixels are never selected


def test_jpeg_rounds_before_coding_and_bits_quantise():
    rgb, depth = _inputs(dtype=torch.float64)
    on_grid = torch.round(rgb * 255) / 255
    assert torch.equal(build_defense("jpeg").purify(rgb), build_defense("jpeg").purify(on_grid))
    q = build_defense("bits", bits=3, modality="depth").purify(depth)
    assert torch.equal(q, torch.round(depth * 7) / 7)


def test_depth_defenses_refuse_rgb_and_unknown_params_name_the_defense():
    with pytest.raises(ValueError, match="HoleFilling acts on"):
        build_defense("hole-fill", modality="rgb")
    with pytest.raises(ValueError, match=r"defense 'jpeg' takes \['quality', 'modality'\], not \['bits'\]"):
        build_defense("jpeg", bits=3)
    with pytest.raises(ValueError, match="unknown defense 'jpg'"):
        build_defense("jpg")


def test_hole_filling_fills_missing_pixels_and_spikes_from_their_neighbours():
    depth = torch.full((1, 1, 9, 9), 0.5, dtype=torch.float64)
    depth[0, 0, 4, 4] = 0.0  # missing
    depth[0, 0, 2, 6] = 0.95  # an adversarial spike
    out = build_defense("hole-fill").purify(depth)
    assert torch.allclose(out, torch.full_like(depth, 0.5))


def test_eot_averages_the_draws_of_a_randomized_defense_with_a_fixed_seed(toy_model, toy_batch):
    d = build_defense("resize-pad", shrink=0.3)
    assert d.randomized
    defended = DefendedModel(toy_model, d)
    b = toy_batch
    torch.manual_seed(1)
    draws = [defended(b.rgb, b.depth) for _ in range(4)]
    assert not torch.equal(draws[0], draws[1])  # the draws differ
    torch.manual_seed(1)
    eot = ExpectationOverTransformation(defended, 4)(b.rgb, b.depth)
    assert torch.allclose(eot, torch.stack(draws).mean(0), atol=1e-6)
    torch.manual_seed(1)
    assert torch.equal(ExpectationOverTransformation(defended, 4)(b.rgb, b.depth), eot)


def test_resize_pad_restores_a_dense_prediction_to_the_input_geometry():
    d = build_defense("resize-pad", shrink=0.25, modality="rgbd")
    rgb, _ = _inputs(n=3, size=32)
    ramp = torch.linspace(0, 1, 32)
    depth = (ramp[:, None] * ramp[None, :]).expand(3, 1, 32, 32).contiguous()  # smooth: resizing keeps it
    torch.manual_seed(0)
    out = d(rgb, depth)
    assert (out.rgb == 0).any()  # padded
    back = out.restore(out.depth)  # what a model that echoes its depth input would predict
    assert back.shape == depth.shape
    assert (back - depth).abs().mean() < 0.5 * (out.depth - depth).abs().mean()


def test_defended_model_is_a_model(toy_model, toy_batch):
    defended = DefendedModel(toy_model, build_defense("median", modality="rgbd"))
    assert defended.input_size == toy_model.input_size and not defended.training
    assert not defended.defense.training
    expected = toy_model(build_defense("median").purify(toy_batch.rgb), build_defense("median", modality="depth")
                         .purify(toy_batch.depth))
    assert torch.allclose(defended(toy_batch.rgb, toy_batch.depth), expected)


def _suite(tmp_path, cell: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"dataset: synthetic\ncells:\n  - {{attack: none}}\n  - {cell}\n")
    return load_suite(str(path))


def test_suite_expands_defenses_and_evals_and_records_eot(tmp_path):
    s = _suite(tmp_path, "{attack: pgd, eps: 8/255, defense: [none, jpeg, {name: resize-pad, shrink: 0.2}], "
                         "eval: [oblivious, adaptive]}")
    labels = [(c.defense_label, c.eval, c.params.get("eot")) for c in s.cells[1:]]
    assert labels == [("none", None, None), ("none", "adaptive", None),
                      ("jpeg(modality=rgb,quality=75)", "oblivious", None),
                      ("jpeg(modality=rgb,quality=75)", "adaptive", None),
                      ("resize-pad(modality=rgbd,shrink=0.2)", "oblivious", None),
                      ("resize-pad(modality=rgbd,shrink=0.2)", "adaptive", 4)]
    assert s.cells[1].id == _suite(tmp_path, "{attack: pgd, eps: 8/255}").cells[1].id  # today's cells keep their ids
    square = _suite(tmp_path, "{attack: art-square, eps: 8/255, defense: resize-pad, eval: adaptive}").cells[1]
    assert "eot" not in square.params  # a black-box attack's every query sees one draw
    tvm = _suite(tmp_path, "{attack: pgd, eps: 8/255, defense: tvm, eval: oblivious, params: {eot: 2}}").cells[1]
    assert tvm.undefended().id == s.cells[1].id  # an oblivious cell crafts as the undefended one


@pytest.mark.parametrize("cell, message", [
    ("{attack: pgd, defense: jpg, eval: adaptive}", r"cells\[1\]: unknown defense 'jpg'"),
    ("{attack: pgd, defense: {name: median, size: 3}, eval: adaptive}", r"cells\[1\]: defense 'median' takes"),
    ("{attack: pgd, defense: median}", r"cells\[1\]: a cell with defense 'median' needs eval"),
    ("{attack: pgd, defense: median, eval: white-box}", r"cells\[1\]: eval is one of"),
])
def test_bad_defense_cells_fail_at_suite_load_naming_the_cell(tmp_path, cell, message):
    with pytest.raises(ValueError, match=message):
        _suite(tmp_path, cell)


def test_d3net_adaptive_view_reaches_depth_where_the_gate_keeps_rgbnet(monkeypatch):
    import models.d3net as d3net

    torch.manual_seed(0)
    model = d3net.d3net_tiny(input_size=64).eval().requires_grad_(False)
    rgb, depth = _inputs(n=2, size=64)
    with torch.no_grad():
        rgb_in, rgbd_in, depth_in = model._subnet_inputs(rgb, depth)
        gap = (model.rgbd_net(rgbd_in).sigmoid() - model.depth_net(depth_in).sigmoid()).abs().mean((1, 2, 3))
    monkeypatch.setattr(d3net, "DDU_THRESHOLD", float(gap.min()) - 0.01)  # the gate keeps RgbNet for both
    grads = []
    for view in (model, model.adaptive_view()):
        x = depth.clone().requires_grad_()
        out = view(rgb, x)
        out.sum().backward()
        grads.append(x.grad.abs().sum())
    assert torch.allclose(model(rgb, depth), model.adaptive_view()(rgb, depth), atol=1e-6)  # same forward
    assert grads[0] == 0 < grads[1]  # oblivious to the gate: no depth gradient; adaptive: through the soft gate


def test_a_defense_on_a_modality_the_classifier_lacks_fails_naming_the_cell(tmp_path):
    from types import SimpleNamespace

    from benchmark.tasks import ClassificationTask

    cell = _suite(tmp_path, "{attack: pgd, defense: {name: median, modality: depth}, eval: adaptive}").cells[1]
    with pytest.raises(ValueError, match=r"cell pgd with defense median\(modality=depth,window=3\): .* takes no depth"):
        ClassificationTask().bind(cell, SimpleNamespace(name="shapes", query="rgb"))
    cell = _suite(tmp_path, "{attack: pgd, defense: {name: depth-consistency, modality: rgb}, eval: adaptive}").cells[1]
    with pytest.raises(ValueError, match=r"depth-consistency.* compares RGB with depth"):
        ClassificationTask().bind(cell, SimpleNamespace(name="shapes", query="rgb"))


def test_a_defended_model_moves_between_devices_and_dtypes_as_a_module(toy_model, toy_batch):
    """nn.Module.to/.double walk every submodule (ART's estimator calls .to): a defense must not shadow them."""
    for name in NAMES:
        defended = DefendedModel(toy_model, build_defense(name, modality="depth")
                                 if DEFENSES[name].modalities == ("depth",) else build_defense(name))
        defended.to("cpu").double()
        torch.manual_seed(0)
        assert defended(toy_batch.rgb.double(), toy_batch.depth.double()).dtype == torch.float64


def _lgs_by_hand(x: np.ndarray, window: int, overlap: int, threshold: float, smoothing: float) -> np.ndarray:
    """LGS's mask on one (H, W) map, written out pixel by pixel and block by block."""
    h, w = x.shape
    g = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            dx = x[i, j] - x[i, j + 1] if j + 1 < w else 0.0
            dy = x[i, j] - x[i + 1, j] if i + 1 < h else 0.0
            g[i, j] = np.hypot(dx, dy)
    g = (g - g.min()) / (g.max() - g.min() + 1e-7)
    covered = np.zeros_like(x, dtype=bool)
    stride = window - overlap
    for i in range(0, h - window + 1, stride):
        for j in range(0, w - window + 1, stride):
            if g[i:i + window, j:j + window].mean() > threshold:
                covered[i:i + window, j:j + window] = True
    return np.clip(smoothing * g * covered, 0, 1)


@pytest.mark.parametrize("window, overlap, threshold, smoothing", [(3, 1, 0.3, 2.3), (4, 0, 0.2, 1.5), (5, 3, 0.25, 4.0)])
def test_lgs_mask_matches_the_equations_by_hand(window, overlap, threshold, smoothing):
    x = np.zeros((9, 11))
    x[1:5, 2:6] = np.indices((4, 4)).sum(0) % 2  # a checkerboard "patch" on a flat map, a soft ramp elsewhere
    x[6:, :] = np.linspace(0, 0.3, 11)
    d = build_defense("lgs", window=window, overlap=overlap, threshold=threshold, smoothing=smoothing, modality="depth")
    depth = torch.from_numpy(x)[None, None]
    out = d(None, depth)
    expected = _lgs_by_hand(x, window, overlap, threshold, smoothing)
    assert out.mask[0, 0].numpy() == pytest.approx(expected, abs=1e-6)
    assert out.depth[0, 0].numpy() == pytest.approx(x * (1 - expected), abs=1e-6)
    assert expected[1:5, 2:6].mean() > 0.5 and expected[:, 8:].max() == 0  # the patch is found, the rest kept


def test_lgs_masks_a_patch_on_rgb_uses_luma_and_passes_a_finite_gradient():
    rgb, _ = _inputs(n=1, size=48)
    rgb = (0.3 * rgb + 0.5 * torch.linspace(0, 1, 48)).clamp(0, 1)  # smooth, mildly noisy scene
    rgb[..., 8:24, 8:24] = (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    d = build_defense("lgs")
    x = rgb.clone().requires_grad_(True)
    out = d(x, None)
    inside, outside = out.mask[..., 8:24, 8:24].mean(), out.mask[..., 30:, 30:].mean()
    assert inside > 0.5 and outside < 0.2, (inside, outside)
    gray = (0.2989 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]).float()
    assert torch.allclose(d.locate(gray), out.mask.float(), atol=1e-5)
    out.rgb.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_depth_consistency_flags_structure_only_one_modality_has():
    """A sticker on RGB (depth flat behind it) and a forged depth patch are flagged; an object boundary in
    both modalities, and a smooth background, are not."""
    size = 48
    ramp = torch.linspace(0.2, 0.6, size).expand(1, 1, size, size).double()
    obj = torch.zeros(1, 1, size, size, dtype=torch.float64)
    obj[..., 28:44, 4:20] = 0.3  # an object: an edge in RGB and in depth
    rgb, depth = (ramp + obj).expand(1, 3, size, size).clone(), 0.5 * ramp + obj
    g = torch.Generator().manual_seed(0)
    rgb[..., 4:16, 4:16] = (torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64) > 0.5).double()  # RGB sticker
    depth[..., 4:16, 30:42] = (torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64) > 0.5).double()  # depth patch
    out = build_defense("depth-consistency")(rgb, depth)
    assert out.mask[..., 4:16, 4:16].mean() > 0.9 and out.mask[..., 4:16, 30:42].mean() > 0.9
    assert out.mask[..., 30:42, 6:18].max() == 0 and out.mask[..., 24:, 24:].max() == 0
    assert (out.rgb[..., 4:16, 4:16] - 0.35).abs().max() < 0.25  # the sticker filled from its surroundings
    assert torch.equal(out.rgb[..., 24:, 24:], rgb[..., 24:, 24:])


def test_feature_shield_low_pass_keeps_low_frequencies_and_the_mask_finds_a_noise_patch():
    from defenses.feature_shield import low_pass

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    smooth = (0.5 + 0.2 * torch.cos(2 * torch.pi * (2 * xx / 40 + yy / 32))).double()[None, None]  # |f| < 0.06
    assert torch.allclose(low_pass(smooth, 0.1), smooth, atol=1e-9)
    assert low_pass(smooth, 0.01).std() < 1e-9  # only the mean left
    rgb = smooth.expand(1, 3, 32, 40).clone()
    rgb[..., 4:14, 20:30] = (torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    out = build_defense("feature-shield")(rgb, None)
    assert out.mask[..., 4:14, 20:30].mean() > 0.6 and out.mask[..., 20:, :16].max() == 0
    assert out.rgb[..., 4:14, 20:30].std() < rgb[..., 4:14, 20:30].std() / 2


def test_jedi_window_sizes_entropy_and_a_noise_patch_found_on_a_smooth_image():
    from defenses.jedi import entropy, window_sizes

    assert window_sizes(128, 160) == (8, 12, 16) and window_sizes(1000, 640) == (10, 16, 20)
    assert entropy(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0) and entropy(np.zeros(9, np.uint8)) == 0
    size = 64
    rgb = torch.linspace(0.2, 0.7, size).expand(1, 3, size, size).clone().double()
    rgb[..., 10:30, 30:50] = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0)).double()
    out = build_defense("jedi")(rgb, None)
    assert out.mask[..., 16:24, 38:46].min() == 1 and out.mask[..., 10:30, 30:50].mean() > 0.5
    assert out.mask[..., 40:, :].max() == 0 and out.mask[..., :, :20].max() == 0
    assert (out.rgb[..., 16:24, 38:46] - rgb[..., 16:24, 38:46]).abs().mean() > 0.1  # in-painted
    assert torch.equal(out.rgb[..., 40:, :], rgb[..., 40:, :])  # untouched outside


def test_patch_cleanser_masks_cover_every_patch_and_double_masking_recovers_the_clean_label():
    from defenses.patch_cleanser import mask_set

    keep = mask_set(32, 40, 5, per_axis=6)
    assert len(keep) == 36
    covered = torch.zeros(32 - 4, 40 - 4, dtype=torch.bool)  # every 5x5 patch under at least one mask
    for k in keep[:, 0]:
        hidden = (~k).double()
        covered |= torch.nn.functional.avg_pool2d(hidden[None, None], 5, stride=1)[0, 0] == 1
    assert covered.all()

    class BrightSpot(torch.nn.Module):  # class 1 when any pixel is near white: a "patch" flips it
        def forward(self, x):
            z = x.flatten(1).amax(1) - 0.95
            return torch.stack([-z, z], 1)

    clean = torch.full((2, 3, 32, 32), 0.3)
    patched = clean.clone()
    patched[0, :, 3:9, 20:26] = 1.0  # 36 px < 4% of 1024
    patched[1, :, 25:31, 0:6] = 1.0
    defended = build_defense("patch-cleanser", patch=0.04).wrap(BrightSpot())
    assert BrightSpot()(patched).argmax(1).tolist() == [1, 1]
    assert defended(patched).argmax(1).tolist() == [0, 0]  # case II: the mask over the patch wins
    surrogate = build_defense("patch-cleanser", patch=0.04).wrap(BrightSpot(), vote=False)  # what attacks craft on
    assert torch.allclose(surrogate(patched), defended.masked_logits(patched, defended.masks(patched)).mean(1))
    x = patched.clone().requires_grad_(True)
    defended(x)[:, 1].sum().backward()  # BPDA: the mean of the masked logits moves with the patch pixels
    assert x.grad[0, :, 3:9, 20:26].abs().sum() > 0
    with pytest.raises(TypeError, match="wraps a classifier"):
        build_defense("patch-cleanser")(patched, None)
    assert defended.certified(clean, torch.zeros(2, dtype=torch.long)).all()
    assert not defended.certified(patched, torch.zeros(2, dtype=torch.long)).any()


def test_square_completion_squares_the_largest_blob_inside_the_image():
    from defenses.patch_segmenter import square_completion

    mask = torch.zeros(3, 1, 12, 12)
    mask[0, 0, 2:4, 3:8] = 1  # a 2 x 5 blob -> a 5 x 5 square centred on it: rows 0-4, cols 3-7
    mask[0, 0, 10, 10] = 1  # a smaller blob is dropped
    mask[1, 0, 9:12, 0:2] = 1  # at the border: 3 x 3, moved inside
    out = square_completion(mask)
    expected = torch.zeros(3, 1, 12, 12)
    expected[0, 0, 0:5, 3:8] = 1
    expected[1, 0, 9:12, 0:3] = 1
    assert torch.equal(out, expected)  # and the empty third mask stays empty


def test_patch_segmenter_fills_its_mask_and_passes_the_probability_gradient():
    d = build_defense("patch-segmenter", modality="rgb")
    torch.nn.init.constant_(d.net.head.bias, -10.0)  # flags nothing
    rgb, depth = _inputs()
    assert torch.equal(d(rgb, depth).rgb, rgb)
    torch.nn.init.constant_(d.net.head.bias, 10.0)  # flags everything: the mean fill of nothing kept is 0
    rgb.requires_grad_(True)
    out = d(rgb, depth)
    assert out.mask.min() == 1 and torch.equal(out.depth, depth)
    out.rgb.sum().backward()  # the hard mask's straight-through gradient is the probability's
    assert rgb.grad.abs().sum() > 0
