"""TimeLens (Tulyakov, Gehrig et al., CVPR 2021) written from the project's facts file.

The official code is under an evaluation-only licence, so this is an independent
implementation of the architecture described in shared/timelens/architecture.md. Its
parameter names map one to one onto the official checkpoint, so a user's own copy of
the released weights loads strictly and the inference path reproduces the released
`run_fast` behaviour (including its swapped refined-image pairing, see `TimeLens.forward`).

A `width` multiplier scales every inner channel count, giving small variants with the
same structure for CPU and live use; `width=1.0` is the official model.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Bins of every voxel grid the model consumes (fixed by the official checkpoint).
NUM_BINS = 5
#: Every U-Net pads its input to a multiple of this (five 2x poolings).
SIZE_MULTIPLE = 32
#: The official checkpoint's tensor names and shapes, copied into the package so CI,
#: which clones the repo without shared/, can still check them.
OFFICIAL_KEYS_PATH = Path(__file__).with_name("official_checkpoint_keys.json")
#: Marks our own checkpoints so `TimeLens.load` can tell them from official files.
CHECKPOINT_FORMAT = "slomo-rig-timelens"
CHECKPOINT_VERSION = 1

_LEAK = 0.1
# (channels, kernel) of the five encoder levels after the two stem convs (32, 7x7).
_DOWN = ((64, 5), (128, 3), (256, 3), (512, 3), (512, 3))
_UNETS = {
    # name: (in channels, out channels) - fixed by the official checkpoint.
    "fusion_network": (16, 3),
    "flow_network": (NUM_BINS, 2),
    "flow_refinement_network": (9, 4),
    "attention_network": (14, 3),
}


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message says what, where and what to do."""


def _scaled(channels: int, width: float) -> int:
    """Channel count for a width multiplier; never below 1 so tiny variants stay valid."""
    return max(1, int(round(channels * width)))


def pad_to_multiple(
    x: torch.Tensor, multiple: int = SIZE_MULTIPLE
) -> tuple[torch.Tensor, Any, Any]:
    """Zero-pad TOP and LEFT to a multiple, as the official U-Nets do.

    Returns the padded tensor and the two pad amounts so `crop_padding` can undo it.
    The amounts are computed from the (possibly symbolic) shape so an ONNX export keeps
    height and width dynamic.
    """
    h, w = x.shape[-2], x.shape[-1]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    return F.pad(x, (pad_w, 0, pad_h, 0)), pad_h, pad_w


def crop_padding(x: torch.Tensor, pad_h: Any, pad_w: Any) -> torch.Tensor:
    """Undo `pad_to_multiple`: drop the rows and columns added at the top and left."""
    return x[:, :, pad_h:, pad_w:]


class _Down(nn.Module):
    """Encoder level: 2x average pooling then two LeakyReLU convs."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(cout, cout, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        x = F.leaky_relu(self.conv1(x), _LEAK)
        return F.leaky_relu(self.conv2(x), _LEAK)


class _Up(nn.Module):
    """Decoder level: bilinear 2x upsampling, conv, concatenation with the skip, conv."""

    def __init__(self, cin: int, cout: int, skip: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout + skip, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.conv1(x), _LEAK)
        return F.leaky_relu(self.conv2(torch.cat([x, skip], dim=1)), _LEAK)


class UNet(nn.Module):
    """Super-SloMo style U-Net with the official layer names; no final activation.

    Pads the input top/left to a multiple of 32 and crops the output back, so any size
    works and results equal the official network's at that size.
    """

    def __init__(self, in_channels: int, out_channels: int, width: float = 1.0) -> None:
        super().__init__()
        stem = _scaled(32, width)
        self.conv1 = nn.Conv2d(in_channels, stem, 7, padding=3)
        self.conv2 = nn.Conv2d(stem, stem, 7, padding=3)
        levels = [stem] + [_scaled(c, width) for c, _ in _DOWN]
        for i, (_, kernel) in enumerate(_DOWN):
            setattr(self, f"down{i + 1}", _Down(levels[i], levels[i + 1], kernel))
        # up1: 512->512 (skip 512), up2: 512->256 (skip 256) ... up5: 64->32 (skip 32)
        for i in range(5):
            cin, cout = levels[5 - i], levels[4 - i]
            setattr(self, f"up{i + 1}", _Up(cin, cout, skip=cout))
        self.conv3 = nn.Conv2d(stem, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad_h, pad_w = pad_to_multiple(x)
        x = F.leaky_relu(self.conv1(x), _LEAK)
        s1 = F.leaky_relu(self.conv2(x), _LEAK)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        s4 = self.down3(s3)
        s5 = self.down4(s4)
        x = self.down5(s5)
        x = self.up1(x, s5)
        x = self.up2(x, s4)
        x = self.up3(x, s3)
        x = self.up4(x, s2)
        x = self.up5(x, s1)
        return crop_padding(self.conv3(x), pad_h, pad_w)


def backward_warp(source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """out(y, x) = source(y + dy, x + dx); flow channel 0 is dy, channel 1 is dx.

    Bilinear sampling with align_corners=True and the official normalisation 2x/(W-1)-1,
    then every pixel whose source lies outside [0, W) x [0, H) is set to 0 (grid_sample's
    zero padding alone would still blend edge pixels for sources in (-1, 0)).
    Always computed in float32: pixel coordinates lose sub-pixel precision in fp16.
    """
    dtype = source.dtype
    source = source.float()
    flow = flow.float()
    h, w = source.shape[-2], source.shape[-1]
    ys = torch.arange(h, dtype=torch.float32, device=source.device).view(1, -1, 1)
    xs = torch.arange(w, dtype=torch.float32, device=source.device).view(1, 1, -1)
    y_src = ys + flow[:, 0]
    x_src = xs + flow[:, 1]
    outside = (x_src < 0) | (x_src >= w) | (y_src < 0) | (y_src >= h)
    grid = torch.stack([2.0 * x_src / (w - 1) - 1.0, 2.0 * y_src / (h - 1) - 1.0], dim=-1)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.masked_fill(outside.unsqueeze(1), 0.0).to(dtype)


class TimeLens(nn.Module):
    """The four TimeLens U-Nets and the inference-time data flow.

    `swap_refined=True` (default) reproduces the released inference path (`run_fast`),
    which puts the image refined from the AFTER side into the attention stage's
    "before_refined" slot and vice versa; parity with the official checkpoint's frames
    requires it. `False` gives the paper / training `forward()` pairing.
    """

    def __init__(self, width: float = 1.0, swap_refined: bool = True) -> None:
        super().__init__()
        if not (width > 0 and math.isfinite(width)):
            raise ValueError(f"width must be a positive number, got {width!r}")
        self.width = float(width)
        self.swap_refined = swap_refined
        for name, (cin, cout) in _UNETS.items():
            setattr(self, name, UNet(cin, cout, width))
        # U-Nets may run in half precision (GPU export); warps and blending stay fp32.
        self.unet_dtype = torch.float32

    def half_unets(self) -> TimeLens:
        """Run the U-Nets in fp16 while inputs, warps, softmax and output stay fp32."""
        for name in _UNETS:
            getattr(self, name).half()
        self.unet_dtype = torch.float16
        return self

    def widened(self, width: float) -> TimeLens:
        """A copy at a larger width that computes exactly the same function: the old
        weights fill the first channels of every layer, the weights from the new input
        channels into the old output channels are zero, and everything feeding the new
        channels keeps a fresh random initialisation. Training then starts from this
        model's quality with more capacity (the weights into old channels from new ones
        get gradients from the first step)."""
        if not width >= self.width:
            raise ValueError(f"widened: width {width} is below this model's {self.width}")
        wide = TimeLens(width=width, swap_refined=self.swap_refined)
        for name in _UNETS:
            _widen_unet(getattr(self, name), getattr(wide, name))
        return wide

    def _unet(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x.to(self.unet_dtype)).float()

    def forward(
        self,
        before_rgb: torch.Tensor,
        after_rgb: torch.Tensor,
        before_voxel: torch.Tensor,
        before_reversed_voxel: torch.Tensor,
        after_voxel: torch.Tensor,
        tau: torch.Tensor,
    ) -> torch.Tensor:
        """Synthesise the frame at tau between two keyframes.

        before_rgb / after_rgb: float32 [B,3,H,W] in [0,1]; voxels: [B,5,H,W] (the
        before grid, its reversed version, the after grid); tau: [B] in (0,1).
        Returns float32 [B,3,H,W], NOT clamped (callers clamp when quantising).
        """
        batch = before_rgb.shape[0]
        fusion = self._unet(
            self.fusion_network, torch.cat([before_voxel, before_rgb, after_voxel, after_rgb], 1)
        )
        # One flow-network pass over both directions (shared weights): a batch of 2B.
        flows = self._unet(self.flow_network, torch.cat([before_reversed_voxel, after_voxel], 0))
        before_flow, after_flow = flows[:batch], flows[batch:]
        warped = backward_warp(torch.cat([before_rgb, after_rgb], 0), flows)
        before_warped, after_warped = warped[:batch], warped[batch:]

        residual = self._unet(
            self.flow_refinement_network, torch.cat([after_warped, before_warped, fusion], 1)
        )
        # The residual is a second backward warp of the warped image, not a composed flow.
        refined = backward_warp(
            torch.cat([after_warped, before_warped], 0),
            torch.cat([residual[:, 0:2], residual[:, 2:4]], 0),
        )
        after_refined, before_refined = refined[:batch], refined[batch:]
        if self.swap_refined:
            before_refined, after_refined = after_refined, before_refined

        tau_map = (
            tau.to(fusion.dtype).view(-1, 1, 1, 1).expand(-1, 1, fusion.shape[2], fusion.shape[3])
        )
        scores = self._unet(
            self.attention_network,
            torch.cat([after_flow, after_refined, before_flow, before_refined, fusion, tau_map], 1),
        )
        weights = torch.softmax(scores, dim=1)
        return (
            weights[:, 0:1] * before_refined
            + weights[:, 1:2] * after_refined
            + weights[:, 2:3] * fusion
        )

    # ------------------------------------------------------------------ checkpoints

    @classmethod
    def from_official_checkpoint(
        cls, path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu"
    ) -> TimeLens:
        """Load a user's copy of the official checkpoint (a torch file with "networks").

        Loads strictly; every failure raises CheckpointError naming the file and the fix.
        `trust_pickle` allows full unpickling for files that hold more than tensors;
        only use it on files from a trusted source.
        """
        blob = _read_torch_file(path, trust_pickle, map_location)
        networks = _networks_entry(blob, path)
        model = cls(width=1.0)
        _load_strict(model, networks, path, "the official TimeLens checkpoint (width 1.0)")
        return model

    @classmethod
    def load(
        cls, path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu"
    ) -> TimeLens:
        """Load either one of our checkpoints (see `save`) or an official one."""
        blob = _read_torch_file(path, trust_pickle, map_location)
        networks = _networks_entry(blob, path)
        if blob.get("format") == CHECKPOINT_FORMAT or "width" in blob:
            width = blob.get("width", 1.0)
            if not isinstance(width, int | float) or not width > 0:
                raise CheckpointError(
                    f"{path}: 'width' entry is {width!r}, expected a positive number. "
                    "Re-save the model with TimeLens.save()."
                )
            model = cls(width=float(width), swap_refined=bool(blob.get("swap_refined", True)))
            _load_strict(model, networks, path, f"a slomo-rig TimeLens checkpoint (width {width})")
            return model
        model = cls(width=1.0)
        _load_strict(model, networks, path, "the official TimeLens checkpoint (width 1.0)")
        return model

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
        """Write our checkpoint: networks (fp32), width, pairing flag and free metadata.

        Only tensors and plain Python values, so it loads with weights_only=True.
        """
        state = {k: v.detach().float().cpu() for k, v in self.state_dict().items()}
        blob = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "networks": state,
            "width": self.width,
            "swap_refined": self.swap_refined,
            "metadata": dict(metadata or {}),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, path)


def _widen_unet(old: UNet, new: UNet) -> None:
    """Copy old into the first channels of new (see TimeLens.widened)."""

    def chans(conv: nn.Conv2d) -> tuple[int, int]:
        return conv.out_channels, conv.in_channels

    def copy(o: nn.Conv2d, n: nn.Conv2d, in_index: torch.Tensor) -> None:
        with torch.no_grad():
            out_old = o.out_channels
            n.weight[:out_old] = 0.0  # old outputs see no new input channel
            n.weight[:out_old, in_index] = o.weight
            n.bias[:out_old] = o.bias

    def same(conv: nn.Conv2d) -> torch.Tensor:
        return torch.arange(conv.in_channels)

    pairs: list[tuple[nn.Conv2d, nn.Conv2d, torch.Tensor]] = []
    for path in ("conv1", "conv2", "conv3"):
        pairs.append((getattr(old, path), getattr(new, path), same(getattr(old, path))))
    for i in range(1, 6):
        for part in ("conv1", "conv2"):
            o, n = getattr(getattr(old, f"down{i}"), part), getattr(getattr(new, f"down{i}"), part)
            pairs.append((o, n, same(o)))
        up_o, up_n = getattr(old, f"up{i}"), getattr(new, f"up{i}")
        pairs.append((up_o.conv1, up_n.conv1, same(up_o.conv1)))
        # conv2 reads cat([x, skip]): the old skip channels move up by the new width of x
        c_old, c_new = up_o.conv1.out_channels, up_n.conv1.out_channels
        idx = torch.arange(up_o.conv2.in_channels)
        pairs.append((up_o.conv2, up_n.conv2, torch.where(idx < c_old, idx, idx - c_old + c_new)))
    for o, n, in_index in pairs:
        (oo, oi), (no, ni) = chans(o), chans(n)
        if oo > no or oi > ni or o.kernel_size != n.kernel_size:
            raise ValueError(f"cannot widen a {o} into a {n}")
        copy(o, n, in_index)


def _looks_like_torch_file(path: Path) -> bool:
    """A torch zip archive or a legacy pickle: worth the "trust_pickle" advice; anything
    else is a corrupt or foreign file."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def _read_torch_file(path: str | Path, trust_pickle: bool, map_location: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist. Give the path of the TimeLens checkpoint "
            "(the official one is 'checkpoint.bin' from uzh-rpg/rpg_timelens; download "
            "it yourself under its licence) or of a file written by TimeLens.save()."
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} is not a file. Give the path of the .bin/.pt file."
        )
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{path} is not a torch checkpoint (neither a torch archive nor a pickle): the "
            "file is damaged or of another kind. Check that the download is complete and "
            "that this is the TimeLens checkpoint file."
        )
    try:
        blob = torch.load(path, map_location=map_location, weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "weights_only" in str(exc):
            raise CheckpointError(
                f"checkpoint {path} holds Python objects besides tensors, which are not "
                "loaded by default because unpickling can run code. If the file comes from "
                "a source you trust, load it with trust_pickle=True."
            ) from exc
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({exc}). Check that the download "
            "is complete and that this is the TimeLens checkpoint file."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for foreign files
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}). "
            "Check that the download is complete and that this is the TimeLens checkpoint file."
        ) from exc
    if not isinstance(blob, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(blob).__name__}, expected a dict with a "
            "'networks' entry (the official TimeLens layout)."
        )
    return blob


def _networks_entry(blob: dict, path: str | Path) -> Mapping[str, torch.Tensor]:
    if "networks" not in blob:
        keys = ", ".join(sorted(map(str, blob))[:8]) or "nothing"
        raise CheckpointError(
            f"checkpoint {path} has no 'networks' entry (it holds: {keys}). The official "
            "TimeLens file stores its state dict under 'networks'; if this is a bare state "
            "dict, re-save it as torch.save({'networks': state_dict}, path)."
        )
    networks = blob["networks"]
    if not isinstance(networks, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: 'networks' is a {type(networks).__name__}, expected a state dict."
        )
    return networks


def _load_strict(
    model: nn.Module, networks: Mapping[str, Any], path: str | Path, what: str
) -> None:
    """Strict load with a readable list of what differs instead of torch's wall of text."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(getattr(v, "shape", ())) for k, v in networks.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes (e.g. {k}: file {found[k]}, model {expected[k]})"
            )
        raise CheckpointError(
            f"checkpoint {path} does not match {what}: tensors " + "; ".join(parts) + ". "
            "Use the unmodified official checkpoint.bin, or a file written by TimeLens.save() "
            "loaded with TimeLens.load()."
        )
    bad = [k for k, v in networks.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: entries {bad[:3]} are not tensors.")
    model.load_state_dict({k: v.float() for k, v in networks.items()}, strict=True)


def official_key_shapes(path: str | Path = OFFICIAL_KEYS_PATH) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the official checkpoint's tensors, from the bundled JSON."""
    data = json.loads(Path(path).read_text())
    return {t["key"]: tuple(t["shape"]) for t in data["tensors"]}


# ---------------------------------------------------------------------- voxel grids


def _polarity_sign(p: np.ndarray) -> np.ndarray:
    """+1 for ON, -1 for OFF, whether polarities come as {0,1} or {-1,1}."""
    return np.where(np.asarray(p) > 0, 1.0, -1.0)


def voxel_grid(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    t_start: float,
    t_end: float,
    bins: int = NUM_BINS,
    height: int = 0,
    width: int = 0,
) -> np.ndarray:
    """Events in [t_start, t_end) -> float32 [bins, height, width] voxel grid.

    Each event adds its polarity (+1/-1) trilinearly over its sub-pixel x, y and its
    normalised time (t - t_start) * (bins - 1) / (t_end - t_start); contributions that
    land outside the grid are dropped; no normalisation; no events -> zeros.
    One np.bincount over all 8 corner contributions keeps it vectorised.
    """
    if height <= 0 or width <= 0 or bins <= 0:
        raise ValueError(f"grid must have positive size, got bins={bins} {height}x{width}")
    if not t_end > t_start:
        raise ValueError(f"voxel window must have t_end > t_start, got [{t_start}, {t_end})")
    n_cells = bins * height * width
    if len(t) == 0:
        return np.zeros((bins, height, width), np.float32)
    xs = np.asarray(x, np.float64)
    ys = np.asarray(y, np.float64)
    # Integer subtraction first keeps microsecond precision for large absolute times.
    tt = np.asarray(t)
    if np.issubdtype(tt.dtype, np.integer) and float(t_start).is_integer():
        dt = (tt - np.int64(t_start)).astype(np.float64)
    else:
        dt = tt.astype(np.float64) - float(t_start)
    ts = dt * ((bins - 1) / (float(t_end) - float(t_start)))
    pol = _polarity_sign(p)

    x0 = np.floor(xs)
    y0 = np.floor(ys)
    t0 = np.floor(ts)
    fx, fy, ft = xs - x0, ys - y0, ts - t0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    t0 = t0.astype(np.int64)

    idx_parts = []
    w_parts = []
    for dti, wt in ((0, 1.0 - ft), (1, ft)):
        ti = t0 + dti
        okt = (ti >= 0) & (ti < bins)
        wt = pol * wt
        for dyi, wy in ((0, 1.0 - fy), (1, fy)):
            yi = y0 + dyi
            oky = okt & (yi >= 0) & (yi < height)
            wty = wt * wy
            base = (ti * height + yi) * width
            for dxi, wx in ((0, 1.0 - fx), (1, fx)):
                xi = x0 + dxi
                ok = oky & (xi >= 0) & (xi < width)
                idx_parts.append((base + xi)[ok])
                w_parts.append((wty * wx)[ok])
    grid = np.bincount(
        np.concatenate(idx_parts), weights=np.concatenate(w_parts), minlength=n_cells
    )
    return grid[:n_cells].astype(np.float32).reshape(bins, height, width)


def voxel_grid_torch(
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    p: torch.Tensor,
    t_start: float,
    t_end: float,
    bins: int = NUM_BINS,
    height: int = 0,
    width: int = 0,
) -> torch.Tensor:
    """Same as `voxel_grid` with torch ops (index_add_), so it runs where the events are.

    Returns float32 [bins, height, width] on the device of `x`. Accumulates in float32
    on GPU (float64 on CPU), so sums may differ from the numpy version by float rounding.
    """
    if height <= 0 or width <= 0 or bins <= 0:
        raise ValueError(f"grid must have positive size, got bins={bins} {height}x{width}")
    if not t_end > t_start:
        raise ValueError(f"voxel window must have t_end > t_start, got [{t_start}, {t_end})")
    device = x.device
    acc = torch.float64 if device.type == "cpu" else torch.float32
    n_cells = bins * height * width
    grid = torch.zeros(n_cells, dtype=acc, device=device)
    if t.numel() == 0:
        return grid.float().view(bins, height, width)
    xs = x.to(acc)
    ys = y.to(acc)
    if not t.is_floating_point() and float(t_start).is_integer():
        dt = (t - int(t_start)).to(acc)
    else:
        dt = t.to(torch.float64) - float(t_start)
        dt = dt.to(acc)
    ts = dt * ((bins - 1) / (float(t_end) - float(t_start)))
    pol = torch.where(p > 0, 1.0, -1.0).to(acc)
    x0, y0, t0 = torch.floor(xs), torch.floor(ys), torch.floor(ts)
    fx, fy, ft = xs - x0, ys - y0, ts - t0
    x0, y0, t0 = x0.long(), y0.long(), t0.long()
    for dti, wt in ((0, 1.0 - ft), (1, ft)):
        ti = t0 + dti
        okt = (ti >= 0) & (ti < bins)
        wt = pol * wt
        for dyi, wy in ((0, 1.0 - fy), (1, fy)):
            yi = y0 + dyi
            oky = okt & (yi >= 0) & (yi < height)
            wty = wt * wy
            base = (ti * height + yi) * width
            for dxi, wx in ((0, 1.0 - fx), (1, fx)):
                xi = x0 + dxi
                ok = oky & (xi >= 0) & (xi < width)
                grid.index_add_(0, (base + xi)[ok], (wty * wx)[ok])
    return grid.float().view(bins, height, width)


def reversed_voxel_grid(grid: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The reversed before grid from the before grid: minus it, with its bins reversed.

    Building it from events with t' = end - t and negated polarity over [0, end-start]
    gives exactly this (normalised time becomes bins-1 minus the original), so it costs
    a copy instead of a second scatter. Works on [bins,H,W] or [B,bins,H,W].
    """
    if isinstance(grid, torch.Tensor):
        return -torch.flip(grid, dims=(-3,))
    return np.ascontiguousarray(-grid[..., ::-1, :, :])


def interval_voxel_grids(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    t0_us: int,
    t1_us: int,
    taus: np.ndarray,
    height: int,
    width: int,
    bins: int = NUM_BINS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three model grids for every tau of one interval, as [N, bins, H, W] float32.

    For tau, the split time is t0 + tau (t1 - t0); "before" events are [t0, split),
    "after" events [split, t1). Returns (before, before_reversed, after).
    """
    taus = np.asarray(taus, np.float64)
    n = len(taus)
    t = np.asarray(t)
    before = np.zeros((n, bins, height, width), np.float32)
    after = np.zeros((n, bins, height, width), np.float32)
    span = float(t1_us - t0_us)
    for k, tau in enumerate(taus):
        split = t0_us + tau * span
        # Events of an interval lie in [t0, t1); windows are half-open as in the facts.
        sel_b = (t >= t0_us) & (t < split)
        sel_a = (t >= split) & (t < t1_us)
        if split > t0_us:
            before[k] = voxel_grid(
                x[sel_b], y[sel_b], t[sel_b], p[sel_b], t0_us, split, bins, height, width
            )
        if t1_us > split:
            after[k] = voxel_grid(
                x[sel_a], y[sel_a], t[sel_a], p[sel_a], split, t1_us, bins, height, width
            )
    return before, reversed_voxel_grid(before), after


def interval_voxel_grids_torch(
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    p: torch.Tensor,
    t0_us: int,
    t1_us: int,
    taus: np.ndarray,
    height: int,
    width: int,
    bins: int = NUM_BINS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torch twin of `interval_voxel_grids` (grids built on the events' device)."""
    span = float(t1_us - t0_us)
    befores, afters = [], []
    for tau in np.asarray(taus, np.float64):
        split = t0_us + float(tau) * span
        sel_b = (t >= t0_us) & (t < split)
        sel_a = (t >= split) & (t < t1_us)
        befores.append(
            voxel_grid_torch(
                x[sel_b], y[sel_b], t[sel_b], p[sel_b], t0_us, split, bins, height, width
            )
        )
        afters.append(
            voxel_grid_torch(
                x[sel_a], y[sel_a], t[sel_a], p[sel_a], split, t1_us, bins, height, width
            )
        )
    if not befores:
        empty = torch.zeros((0, bins, height, width), device=x.device)
        return empty, empty, empty
    before = torch.stack(befores)
    return before, reversed_voxel_grid(before), torch.stack(afters)
