"""TimeLens model, checkpoints, export, warp and voxel grids against the facts file.

The reference forward pass below is written independently from
shared/timelens/architecture.md (step by step, no batching tricks) so the model's
inference pairing is checked against the facts, not against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.timelens import (
    OFFICIAL_KEYS_PATH,
    CheckpointError,
    TimeLens,
    backward_warp,
    crop_padding,
    interval_voxel_grids,
    official_key_shapes,
    pad_to_multiple,
    reversed_voxel_grid,
    voxel_grid,
    voxel_grid_torch,
)

SHARED_KEYS = (
    Path(__file__).resolve().parents[2] / "shared" / "timelens" / "official_checkpoint_keys.json"
)


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official names/shapes and small seeded random weights."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in official_key_shapes().items()}


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.bin"
    torch.save({"networks": official_state_dict()}, path)
    return path


def small_model(seed: int = 0, width: float = 0.25, swap: bool = True) -> TimeLens:
    torch.manual_seed(seed)
    model = TimeLens(width=width, swap_refined=swap).eval()
    # Larger weights than default init so flows are several pixels and every branch matters.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def inputs(batch: int = 2, h: int = 37, w: int = 45, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    rgb0 = torch.rand(batch, 3, h, w, generator=g)
    rgb1 = torch.rand(batch, 3, h, w, generator=g)
    before = torch.randn(batch, 5, h, w, generator=g)
    after = torch.randn(batch, 5, h, w, generator=g)
    tau = torch.rand(batch, generator=g)
    return rgb0, rgb1, before, -torch.flip(before, dims=(1,)), after, tau


# --------------------------------------------------------------- names and checkpoints


def test_keys_copy_matches_shared() -> None:
    if not SHARED_KEYS.exists():
        pytest.skip("shared/ not checked out beside the repo")
    assert json.loads(OFFICIAL_KEYS_PATH.read_text()) == json.loads(SHARED_KEYS.read_text())


def test_parameter_names_and_shapes_match_official() -> None:
    expected = official_key_shapes()
    got = {k: tuple(v.shape) for k, v in TimeLens(1.0).state_dict().items()}
    assert got == expected
    assert len(got) == 184
    assert sum(int(np.prod(s)) for s in got.values()) == 79_206_668


@pytest.mark.parametrize("width", [0.5, 0.25])
def test_width_keeps_names_and_io_channels(width: float) -> None:
    full = TimeLens(1.0).state_dict()
    small = TimeLens(width).state_dict()
    assert list(full) == list(small)
    for net in ("fusion_network", "flow_network", "flow_refinement_network", "attention_network"):
        # In and out channels are fixed by the data; only inner channels scale.
        assert small[f"{net}.conv1.weight"].shape[1] == full[f"{net}.conv1.weight"].shape[1]
        assert small[f"{net}.conv3.weight"].shape[0] == full[f"{net}.conv3.weight"].shape[0]
        assert small[f"{net}.conv1.weight"].shape[0] == round(32 * width)
    assert sum(v.numel() for v in small.values()) < sum(v.numel() for v in full.values())


def test_official_checkpoint_loads_strictly(official_ckpt: Path) -> None:
    model = TimeLens.from_official_checkpoint(official_ckpt)
    sd = official_state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert model.swap_refined


def test_our_checkpoint_roundtrip(tmp_path: Path, official_ckpt: Path) -> None:
    model = small_model(width=0.5)
    path = tmp_path / "ours.pt"
    model.save(path, metadata={"trained_on": "sim"})
    loaded = TimeLens.load(path)
    assert loaded.width == 0.5
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    blob = torch.load(path, weights_only=True)
    assert blob["metadata"] == {"trained_on": "sim"}
    # load() also takes the official layout.
    assert TimeLens.load(official_ckpt).width == 1.0


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist.*checkpoint"):
        TimeLens.from_official_checkpoint(tmp_path / "nope.bin")


def test_non_torch_file_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes\.bin is not a torch checkpoint.*damaged"):
        TimeLens.from_official_checkpoint(path)
    # a torch archive cut short is a damaged file too, not a question of trust
    good = tmp_path / "ok.pt"
    torch.save({"networks": {}}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(CheckpointError, match=r"cut\.pt is not a"):
        TimeLens.load(cut)


def test_missing_networks_error(tmp_path: Path) -> None:
    path = tmp_path / "bare.bin"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match=r"no 'networks' entry.*torch.save"):
        TimeLens.from_official_checkpoint(path)


def test_mismatched_keys_and_shapes_error(tmp_path: Path) -> None:
    sd = official_state_dict()
    del sd["attention_network.conv3.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["flow_network.conv3.weight"] = torch.zeros(3, 32, 3, 3)
    path = tmp_path / "wrong.bin"
    torch.save({"networks": sd}, path)
    with pytest.raises(CheckpointError) as err:
        TimeLens.from_official_checkpoint(path)
    msg = str(err.value)
    assert "wrong.bin" in msg and "attention_network.conv3.bias" in msg
    assert "extra.weight" in msg and "flow_network.conv3.weight" in msg
    assert "official" in msg


def test_small_checkpoint_is_not_official(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    torch.save({"networks": TimeLens(0.25).state_dict()}, path)
    with pytest.raises(CheckpointError, match="other shapes"):
        TimeLens.from_official_checkpoint(path)


# --------------------------------------------------------------- warp and padding


def test_warp_zero_flow_is_identity() -> None:
    src = torch.rand(2, 3, 9, 13)
    out = backward_warp(src, torch.zeros(2, 2, 9, 13))
    assert torch.allclose(out, src, atol=1e-6)


def test_warp_integer_shift() -> None:
    src = torch.rand(1, 3, 8, 10)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 2.0  # dy: out(y, x) = src(y + 2, x - 3)
    flow[:, 1] = -3.0
    out = backward_warp(src, flow)
    expected = torch.zeros_like(src)
    expected[:, :, :6, 3:] = src[:, :, 2:, :7]
    assert torch.allclose(out, expected, atol=1e-6)


def test_warp_source_just_outside_is_zero() -> None:
    src = torch.ones(1, 1, 4, 4)
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 1] = -0.5  # column 0 samples x = -0.5: outside, must be 0 (not a half blend)
    out = backward_warp(src, flow)
    assert torch.all(out[..., 0] == 0) and torch.allclose(out[..., 1:], torch.ones(1, 1, 4, 3))


def test_padding_top_left_and_crop() -> None:
    x = torch.rand(1, 2, 33, 70)
    padded, ph, pw = pad_to_multiple(x)
    assert padded.shape[-2:] == (64, 96) and (ph, pw) == (31, 26)
    assert torch.equal(padded[..., 31:, 26:], x)
    assert padded[..., :31, :].abs().sum() == 0 and padded[..., :, :26].abs().sum() == 0
    assert torch.equal(crop_padding(padded, ph, pw), x)
    same, ph, pw = pad_to_multiple(torch.rand(1, 1, 64, 32))
    assert (ph, pw) == (0, 0) and same.shape[-2:] == (64, 32)


@pytest.mark.parametrize("hw", [(37, 45), (64, 64), (20, 100)])
def test_unet_output_size(hw: tuple[int, int]) -> None:
    model = small_model()
    with torch.inference_mode():
        out = model(*inputs(1, *hw))
    assert out.shape == (1, 3, *hw)


# --------------------------------------------------------------- inference pairing


def reference_unet(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The facts' U-Net spelled out: pad top/left to 32, encoder, decoder, crop."""
    h, w = x.shape[-2:]
    ph, pw = -h % 32, -w % 32
    x = F.pad(x, (pw, 0, ph, 0))

    def act(conv: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(conv(v), 0.1)

    x = act(net.conv2, act(net.conv1, x))
    skips = [x]
    for i in range(1, 6):
        d = getattr(net, f"down{i}")
        x = act(d.conv2, act(d.conv1, F.avg_pool2d(x, 2)))
        skips.append(x)
    x = skips.pop()
    for i in range(1, 6):
        u = getattr(net, f"up{i}")
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = act(u.conv2, torch.cat([act(u.conv1, x), skips.pop()], 1))
    return net.conv3(x)[:, :, ph:, pw:]


def reference_warp(src: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    _, _, h, w = src.shape
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    sx, sy = xx + dx, yy + dy
    grid = torch.stack([2 * sx / (w - 1) - 1, 2 * sy / (h - 1) - 1], -1)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    outside = (sx < 0) | (sx >= w) | (sy < 0) | (sy >= h)
    return out * (~outside).unsqueeze(1)


def reference_inference(model: TimeLens, i0, i1, vb, vb_rev, va, tau) -> torch.Tensor:
    """One sample at a time, following the facts' data flow and run_fast's swap."""
    frames = []
    for b in range(i0.shape[0]):
        s = slice(b, b + 1)
        fusion = reference_unet(model.fusion_network, torch.cat([vb[s], i0[s], va[s], i1[s]], 1))
        before_flow = reference_unet(model.flow_network, vb_rev[s])
        after_flow = reference_unet(model.flow_network, va[s])
        before_warped = reference_warp(i0[s], before_flow[:, 0], before_flow[:, 1])
        after_warped = reference_warp(i1[s], after_flow[:, 0], after_flow[:, 1])
        res = reference_unet(
            model.flow_refinement_network, torch.cat([after_warped, before_warped, fusion], 1)
        )
        after_ref = reference_warp(after_warped, res[:, 0], res[:, 1])
        before_ref = reference_warp(before_warped, res[:, 2], res[:, 3])
        # run_fast: the after-side refined image sits in the "before_refined" slot.
        slot_before, slot_after = after_ref, before_ref
        tau_map = torch.full_like(fusion[:, :1], float(tau[b]))
        att = reference_unet(
            model.attention_network,
            torch.cat([after_flow, slot_after, before_flow, slot_before, fusion, tau_map], 1),
        )
        a = torch.softmax(att, 1)
        frames.append(a[:, 0:1] * slot_before + a[:, 1:2] * slot_after + a[:, 2:3] * fusion)
    return torch.cat(frames)


def test_inference_path_matches_reference_with_swapped_pairing() -> None:
    model = small_model()
    args = inputs(2, 37, 45)
    with torch.inference_mode():
        ours = model(*args)
        ref = reference_inference(model, *args)
        model.swap_refined = False
        unswapped = model(*args)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4), (ours - ref).abs().max()
    # The case is sensitive to the pairing: swapping it changes the frame clearly.
    assert (unswapped - ref).abs().max() > 1e-2


def test_batch_items_are_independent() -> None:
    model = small_model()
    args = inputs(3, 33, 40)
    with torch.inference_mode():
        whole = model(*args)
        one = model(*(a[1:2] for a in args))
    assert torch.allclose(whole[1:2], one, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("swap", [True, False])
def test_widened_model_computes_the_same_function_and_learns(swap: bool) -> None:
    narrow = small_model(width=0.125, swap=swap)
    wide = narrow.widened(0.25)
    assert wide.width == 0.25 and wide.swap_refined == swap
    assert wide.flow_network.conv1.out_channels > narrow.flow_network.conv1.out_channels
    args = inputs(2, 41, 50)
    with torch.inference_mode():
        a, b = narrow(*args), wide(*args)
    assert (a - b).abs().max() < 1e-4 * max(1.0, float(a.abs().max()))
    # the new channels take part from the first step: the zero weights into the old
    # channels get gradients, and one step changes the output
    wide.train()
    loss = wide(*args).abs().mean()
    loss.backward()
    w = wide.flow_network.up5.conv2.weight
    c_new = wide.flow_network.up5.conv1.out_channels
    c_old = narrow.flow_network.up5.conv1.out_channels
    assert float(w.grad[:c_old, c_old:c_new].abs().sum()) > 0
    with pytest.raises(ValueError, match="below"):
        wide.widened(0.125)


# --------------------------------------------------------------- ONNX


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    from models.export import export_onnx

    model = small_model()
    path = export_onnx(model, tmp_path / "tl.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for hw, batch in (((64, 96), 2), ((50, 70), 2), ((33, 65), 1)):
        args = inputs(batch, *hw, seed=7)
        with torch.inference_mode():
            ref = model(*args).numpy()
        feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args, strict=True)}
        out = sess.run(None, feeds)[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 1e-4, (hw, np.abs(out - ref).max())
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["precision"] == "fp32" and float(meta["width"]) == 0.25


def test_interpolator_onnx_and_torch_agree(tmp_path: Path) -> None:
    from contracts.jobs import IntervalJob
    from models.engine import OnnxTimeLens, TimeLensInterpolator
    from models.export import export_onnx
    from rig.types import EventBatch

    rng = np.random.default_rng(0)
    h, w, n = 30, 41, 3000
    events = EventBatch(
        np.sort(rng.integers(10_000, 20_000, n)).astype(np.int64),
        (rng.random(n) * w).astype(np.float32),
        (rng.random(n) * h).astype(np.float32),
        rng.integers(0, 2, n).astype(np.int8),
    )
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    job = IntervalJob(0, *frames, 10_000, 20_000, events, np.array([12_500, 15_000, 17_500]))
    model = small_model()
    engine = OnnxTimeLens(
        export_onnx(model, tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    a = TimeLensInterpolator(backend="onnx", engine=engine).interpolate(job)
    b = TimeLensInterpolator(model, backend="torch").interpolate(job)
    assert a.shape == (3, h, w, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # Frames differ per tau (tau and the event split reach the network).
    assert not np.array_equal(b[0], b[2])


# --------------------------------------------------------------- voxel grids


def test_voxel_single_event_one_cell() -> None:
    # t normalised: (250 - 0) * 4 / 1000 = 1.0 -> bin 1 exactly.
    g = voxel_grid(
        np.array([3.0]), np.array([2.0]), np.array([250]), np.array([1]), 0, 1000, 5, 4, 6
    )
    expected = np.zeros((5, 4, 6), np.float32)
    expected[1, 2, 3] = 1.0
    np.testing.assert_array_equal(g, expected)
    assert g.dtype == np.float32


def test_voxel_subpixel_and_time_split_trilinearly() -> None:
    # x = 1.25, y = 2.5, t at bin 2.75, OFF polarity.
    g = voxel_grid(
        np.array([1.25]), np.array([2.5]), np.array([6875]), np.array([0]), 0, 10_000, 5, 4, 4
    )
    for b, wt in ((2, 0.25), (3, 0.75)):
        for yy, wy in ((2, 0.5), (3, 0.5)):
            for xx, wx in ((1, 0.75), (2, 0.25)):
                assert g[b, yy, xx] == pytest.approx(-wt * wy * wx)
    assert g.sum() == pytest.approx(-1.0)
    assert np.count_nonzero(g) == 8


def test_voxel_out_of_grid_dropped() -> None:
    x = np.array([-1.0, 5.5, 10.0, 2.0])
    y = np.array([1.0, 1.0, 1.0, -0.5])
    g = voxel_grid(x, y, np.array([0, 0, 0, 0]), np.array([1, 1, 1, 1]), 0, 100, 5, 3, 6)
    assert g[0, 1, 5] == pytest.approx(0.5)  # half of x=5.5 stays, half falls off the edge
    assert g[0, 0, 2] == pytest.approx(0.5)  # half of y=-0.5 stays
    assert g.sum() == pytest.approx(1.0)


def test_voxel_empty_is_zeros() -> None:
    e = np.array([], np.float32)
    g = voxel_grid(e, e, np.array([], np.int64), np.array([], np.int8), 0, 100, 5, 3, 4)
    assert g.shape == (5, 3, 4) and not g.any()


def test_voxel_polarity_conventions_equal() -> None:
    rng = np.random.default_rng(3)
    n = 500
    x, y = rng.random(n) * 19, rng.random(n) * 14
    t = np.sort(rng.integers(1_000_000, 1_050_000, n))
    p01 = rng.integers(0, 2, n).astype(np.int8)
    a = voxel_grid(x, y, t, p01, 1_000_000, 1_050_000, 5, 15, 20)
    b = voxel_grid(x, y, t, (2 * p01 - 1).astype(np.int8), 1_000_000, 1_050_000, 5, 15, 20)
    np.testing.assert_array_equal(a, b)
    assert a.sum() == pytest.approx(float((2 * p01.astype(int) - 1).sum()), abs=1e-3)


def test_reversed_grid_identity() -> None:
    rng = np.random.default_rng(4)
    n, start, end = 800, 5_000, 9_000
    x, y = rng.random(n) * 12, rng.random(n) * 10
    t = rng.integers(start, end, n)
    p = rng.integers(0, 2, n)
    before = voxel_grid(x, y, t, p, start, end, 5, 10, 12)
    # Definition from the facts: t' = end - t, polarity negated, window [0, end - start].
    direct = voxel_grid(x, y, end - t, 1 - p, 0, end - start, 5, 10, 12)
    np.testing.assert_allclose(direct, -before[::-1], atol=1e-5)
    np.testing.assert_allclose(reversed_voxel_grid(before), direct, atol=1e-5)
    np.testing.assert_allclose(
        reversed_voxel_grid(torch.from_numpy(before)).numpy(), direct, atol=1e-5
    )


def test_voxel_torch_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    x = (rng.random(n) * 33 - 1).astype(np.float32)
    y = (rng.random(n) * 21 - 1).astype(np.float32)
    t = np.sort(rng.integers(0, 10_000, n)).astype(np.int64)
    p = rng.integers(0, 2, n).astype(np.int8)
    a = voxel_grid(x, y, t, p, 0, 10_000, 5, 20, 32)
    b = voxel_grid_torch(*map(torch.from_numpy, (x, y, t, p)), 0, 10_000, 5, 20, 32)
    np.testing.assert_allclose(b.numpy(), a, atol=1e-5)


def test_interval_grids_split_at_tau() -> None:
    x = np.array([1.0, 2.0])
    y = np.array([1.0, 1.0])
    t = np.array([100, 300])
    p = np.array([1, 0])
    before, rev, after = interval_voxel_grids(x, y, t, p, 0, 400, np.array([0.5]), 3, 4)
    # before window [0, 200): event at 100 -> bin 2; after [200, 400): event at 300 -> bin 2.
    assert before[0, 2, 1, 1] == 1.0 and before.sum() == 1.0
    assert after[0, 2, 1, 2] == -1.0 and after.sum() == -1.0
    np.testing.assert_array_equal(rev, -before[:, ::-1])


def test_voxel_grid_of_a_million_events_keeps_every_event() -> None:
    """At full scale every event lands in the grid with its weight (its speed is a
    benchmark, `slomo-rig bench pipeline`, not a timed test)."""
    rng = np.random.default_rng(6)
    n = 1_000_000
    x, y = (rng.random(n) * 639).astype(np.float32), (rng.random(n) * 479).astype(np.float32)
    t = np.sort(rng.integers(0, 10_000, n)).astype(np.int64)
    p = rng.integers(0, 2, n).astype(np.int8)
    grid = voxel_grid(x, y, t, p, 0, 10_000, 5, 480, 640)
    assert grid.shape == (5, 480, 640)
    signed = np.where(p > 0, 1.0, -1.0)
    assert abs(float(grid.sum(dtype=np.float64)) - signed.sum()) < 1e-3 * n
    assert abs(float(np.abs(grid).sum(dtype=np.float64))) <= n + 1e-3 * n


def test_fp16_export_keeps_float32_io(tmp_path: Path) -> None:
    import onnxruntime as ort

    from models.export import export_onnx

    torch.manual_seed(0)
    model = TimeLens(0.25).eval()  # default init: outputs of order 1, fp16 error ~1e-3
    path = export_onnx(model, tmp_path / "tl16.onnx", fp16=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert all(i.type == "tensor(float)" for i in sess.get_inputs())
    args = inputs(1, 40, 56, seed=2)
    with torch.inference_mode():
        ref = model(*args).numpy()
    out = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args, strict=True)})[
        0
    ]
    assert np.abs(out - ref).max() < 1e-2
    assert next(p for p in model.parameters()).dtype == torch.float32  # model untouched


def test_bench_rows_and_table(tmp_path: Path) -> None:
    from models.bench import bench_model, format_table

    rows = bench_model(sizes=((32, 48),), widths=(0.25,), repeats=1, workdir=tmp_path)
    assert {(r["backend"], r["precision"]) for r in rows} >= {("torch", "fp32"), ("onnx", "fp32")}
    assert all(r["ms_per_frame"] > 0 and r["fps"] > 0 for r in rows)
    table = format_table(rows)
    # --sizes and the table are both WxH: sizes=((h, w),) = ((32, 48),) is 48x32
    assert table.startswith("| size (WxH)") and "| 48x32 |" in table
    assert "CPUExecutionProvider" in table
