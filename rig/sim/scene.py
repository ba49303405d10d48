"""A procedural planar scene, a pure function of time, rendered into any view.

The scene lives in "world" coordinates, which are the RGB camera's pixel grid. A view
is an output size plus a 3x3 world->view homography, so the RGB camera (identity) and
the event camera (its homography) see exactly the same scene. Because the scene is a
function of time rather than a simulation with state, frames, events and ground truth
can be rendered at any instant and always agree.

Speed matters (the event view is rendered thousands of times per simulated second on
one core): the background is one warp of a pre-built periodic texture, and each object
is warped only inside its bounding box in the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Linear-light luminance (Rec. 709 primaries): what an event pixel integrates.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def _periodic_noise(
    rng: np.random.Generator, shape: tuple[int, int], scales: list[float]
) -> np.ndarray:
    """Multi-octave smoothed noise that tiles seamlessly (filtered in Fourier space),
    so the panning background can wrap forever without a seam."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f2 = fx**2 + fy**2
    out = np.zeros(shape, np.float64)
    for i, s in enumerate(scales):
        spec = np.fft.rfft2(rng.standard_normal(shape))
        field = np.fft.irfft2(spec * np.exp(-2 * (math.pi * s) ** 2 * f2), s=shape)
        field /= field.std() + 1e-12
        out += field * (0.6**i)
    return out / (out.std() + 1e-12)


def _periodic_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    h, w = img.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    g = np.exp(-2 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    chans = [np.fft.irfft2(np.fft.rfft2(img[..., c]) * g, s=(h, w)) for c in range(img.shape[2])]
    return np.stack(chans, axis=-1)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.1, 0.9, 3)


def make_background_tile(rng: np.random.Generator, period: tuple[int, int]) -> np.ndarray:
    """Periodic RGB texture in [0.04, 0.96]: coloured noise at several scales plus
    hard-edged shapes and lines (strong edges give crisp events)."""
    pw, ph = period
    base = _periodic_noise(rng, (ph, pw), [24.0, 8.0, 3.0, 1.2])
    tint = _periodic_noise(rng, (ph, pw), [40.0, 12.0])
    c0, c1, c2 = (_random_colour(rng) for _ in range(3))
    img = 0.5 + 0.18 * base[..., None] * (c0 - 0.5) * 2
    img = img + 0.12 * tint[..., None] * (c1 - c2)
    shapes = np.zeros((ph, pw, 3), np.float64)
    weight = np.zeros((ph, pw, 1), np.float64)
    for _ in range(40):
        colour = tuple(float(v) for v in _random_colour(rng))
        kind = rng.integers(3)
        cx, cy = rng.uniform(0, pw), rng.uniform(0, ph)
        size = rng.uniform(6, 40)
        for dx in (-pw, 0, pw):  # draw every wrapped copy so the tile stays periodic
            for dy in (-ph, 0, ph):
                x, y = int(cx + dx), int(cy + dy)
                if kind == 0:
                    pts = (x, y), (int(x + size), int(y + size * 0.6))
                    cv2.rectangle(shapes, *pts, colour, -1)
                    cv2.rectangle(weight, *pts, (1.0,), -1)
                elif kind == 1:
                    cv2.circle(shapes, (x, y), int(size / 2), colour, -1)
                    cv2.circle(weight, (x, y), int(size / 2), (1.0,), -1)
                else:
                    end = (int(x + size * 1.5), int(y - size * 0.7))
                    cv2.line(shapes, (x, y), end, colour, 3)
                    cv2.line(weight, (x, y), end, (1.0,), 3)
    img = img * (1 - 0.8 * weight) + 0.8 * shapes * weight
    img = _periodic_blur(img, 0.8)  # anti-alias the hard edges, still periodic
    return np.clip(img, 0.04, 0.96).astype(np.float32)


def _sprite(rng: np.random.Generator) -> np.ndarray:
    """One textured object with alpha, premultiplied RGBA float32 (warps and composites
    without dark fringes). Shape: rectangle, disc or polygon."""
    size = int(rng.integers(36, 72))
    pad = 3
    n = size + 2 * pad
    noise = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 2.0)
    noise /= noise.std() + 1e-6
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * rng.uniform(0.3, 0.8))
    c0, c1 = _random_colour(rng), _random_colour(rng)
    mix = np.clip(0.5 + 0.25 * noise + 0.3 * stripes, 0, 1)[..., None]
    rgb = np.clip(c0 * mix + c1 * (1 - mix), 0.03, 0.97).astype(np.float32)
    mask = np.zeros((n, n), np.uint8)
    kind = rng.integers(3)
    c = n / 2
    if kind == 0:
        w2, h2 = size / 2, size * rng.uniform(0.25, 0.5)
        cv2.rectangle(mask, (int(c - w2), int(c - h2)), (int(c + w2), int(c + h2)), 255, -1)
    elif kind == 1:
        cv2.circle(mask, (int(c), int(c)), size // 2, 255, -1, cv2.LINE_AA)
    else:
        k = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = rng.uniform(0.6, 1.0, k) * size / 2
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
    alpha = mask.astype(np.float32) / 255.0
    return np.dstack([rgb * alpha[..., None], alpha])


def _with_transmittance(premultiplied: np.ndarray) -> np.ndarray:
    """(colour * alpha, 1 - alpha): compositing is then out * T + colour, one op fewer,
    with the warp's border value T = 1 meaning "nothing here"."""
    out = premultiplied.copy()
    out[..., 3] = 1.0 - premultiplied[..., 3]
    return out


def _reflect(free: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions of a point whose free path (no walls) is `free`, reflecting off lo and
    hi: folding the free path is the closed form of a bounce, so the scene stays a pure
    function of time."""
    span = hi - lo
    if span <= 0:
        return np.full_like(free, lo)
    u = np.mod(free - lo, 2 * span)
    return lo + np.where(u < span, u, 2 * span - u)


@dataclass(frozen=True)
class Sway:
    """A sinusoidal displacement (amplitude px per axis, frequency Hz, phase rad per
    axis): the non-linear part of a motion. Real fast scenes are rarely straight lines
    at constant speed (a hand-held or vibrating camera, swinging or bouncing parts), and
    that is exactly where frames alone mislead an interpolator and events do not."""

    amplitude: tuple[float, float] = (0.0, 0.0)
    hz: tuple[float, float] = (0.0, 0.0)
    phase: tuple[float, float] = (0.0, 0.0)

    @property
    def active(self) -> bool:
        return any(a != 0 and f != 0 for a, f in zip(self.amplitude, self.hz, strict=True))

    def at(self, t_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t_s, np.float64)
        return tuple(  # type: ignore[return-value]
            a * np.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self.amplitude, self.hz, self.phase, strict=True)
        )

    def peak_speed(self) -> float:
        """Upper bound of the speed it adds, px/s."""
        amp_hz = zip(self.amplitude, self.hz, strict=True)
        return math.hypot(*(2 * math.pi * abs(a * f) for a, f in amp_hz))


def random_sway(rng: np.random.Generator, amplitude: float, hz: float) -> Sway:
    """A sway of about `amplitude` px at about `hz`, in a random direction, with a
    slightly different frequency per axis (a Lissajous path, not a line)."""
    if amplitude == 0 or hz == 0:
        return Sway()
    direction = rng.uniform(0, 2 * math.pi)
    a = amplitude * rng.uniform(0.7, 1.3)
    return Sway(
        amplitude=(a * math.cos(direction), a * math.sin(direction)),
        hz=(hz * rng.uniform(0.8, 1.2), hz * rng.uniform(0.8, 1.2)),
        phase=(rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)),
    )


@dataclass
class SceneObject:
    rgba: np.ndarray  # (R, G, B) * alpha and 1 - alpha, float32
    luma: np.ndarray  # (Y * alpha, 1 - alpha, 0, 0): 4 channels warp fastest in OpenCV
    pos0: tuple[float, float]
    velocity: tuple[float, float]
    angle0: float  # degrees
    spin: float  # degrees per second
    bounds: tuple[float, float, float, float]  # x_lo, y_lo, x_hi, y_hi of the centre
    sway: Sway = Sway()

    def poses(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(world_from_sprite, sprite_from_world), each [n, 3, 3], at the n instants t_s
        (seconds); built in closed form, no matrix inverse per draw."""
        x_lo, y_lo, x_hi, y_hi = self.bounds
        sx, sy = self.sway.at(t_s)
        cx = _reflect(self.pos0[0] + self.velocity[0] * t_s + sx, x_lo, x_hi)
        cy = _reflect(self.pos0[1] + self.velocity[1] * t_s + sy, y_lo, y_hi)
        a = np.radians(self.angle0 + self.spin * t_s)
        ca, sa = np.cos(a), np.sin(a)
        hx, hy = (self.rgba.shape[1] - 1) / 2, (self.rgba.shape[0] - 1) / 2
        fwd = np.zeros((len(t_s), 3, 3))
        fwd[:, 0, 0], fwd[:, 0, 1], fwd[:, 0, 2] = ca, -sa, cx - ca * hx + sa * hy
        fwd[:, 1, 0], fwd[:, 1, 1], fwd[:, 1, 2] = sa, ca, cy - sa * hx - ca * hy
        fwd[:, 2, 2] = 1.0
        inv = np.zeros((len(t_s), 3, 3))
        inv[:, 0, 0], inv[:, 0, 1], inv[:, 0, 2] = ca, sa, hx - ca * cx - sa * cy
        inv[:, 1, 0], inv[:, 1, 1], inv[:, 1, 2] = -sa, ca, hy + sa * cx - ca * cy
        inv[:, 2, 2] = 1.0
        return fwd, inv


def _shift_periodic(img: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """img(x + shift) for a periodic band-limited image: an exact sub-pixel shift (a phase
    ramp in Fourier space), so pre-shifted copies match the pan at later instants."""
    h, w = img.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    ramp = np.exp(2j * math.pi * (fx * shift[0] + fy * shift[1]))
    return np.fft.irfft2(np.fft.rfft2(img) * ramp, s=(h, w))


class Scene:
    """Panning periodic background plus n bouncing, spinning sprites.

    world_size is the RGB view (objects bounce inside it); world_bounds is the
    rectangle (x0, y0, x1, y1) that any view may see (the event camera sees a little
    more than the RGB camera). The background moves as if the camera pans at
    pan_speed px/s, i.e. the content drifts by -pan_speed in the view; camera_shake
    (px, Hz) adds a sinusoidal sway of the camera, object_swing (px, Hz) one per object
    on top of its straight-line bouncing path (each draws its own direction, phase and
    a frequency within +-20 %). Both default to none.

    `render_gray_batch` renders BATCH consecutive instants step_us apart with ONE
    4-channel warp: channel j of the luminance texture is pre-shifted by the pan over j
    steps. OpenCV warps 4 float channels barely slower than 1, so the background costs
    a quarter per step, and the result is exact because the pan is a constant velocity.
    A shaking camera breaks that, so its background takes one 1-channel warp per step.
    """

    BATCH = 4

    def __init__(
        self,
        seed: int,
        world_size: tuple[int, int],
        world_bounds: tuple[float, float, float, float],
        pan_speed: tuple[float, float] = (60.0, 20.0),
        n_objects: int = 3,
        object_speed: float = 150.0,
        rotation_speed: float = 90.0,
        step_us: int = 500,
        period: tuple[int, int] = (512, 384),
        camera_shake: tuple[float, float] = (0.0, 0.0),
        object_swing: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        rng = np.random.default_rng([seed, 0x5C3E])
        # Non-linear motion draws from its own stream: with none, a seed gives exactly the
        # scene it gave before sways existed.
        sway_rng = np.random.default_rng([seed, 0x5A7E])
        self.shake = random_sway(sway_rng, *camera_shake)
        self.world_size = world_size
        self.pan_speed = pan_speed
        self.period = period
        self.step_us = step_us
        tile = make_background_tile(rng, period)
        luma = tile @ LUMA
        shifts = [
            (pan_speed[0] * j * step_us * 1e-6, pan_speed[1] * j * step_us * 1e-6)
            for j in range(self.BATCH)
        ]
        luma4 = np.stack([luma] + [_shift_periodic(luma, s) for s in shifts[1:]], axis=-1)
        rgba = np.dstack([tile, np.zeros(tile.shape[:2], np.float32)])
        # Extend the tiles so every view at every pan offset (taken modulo the period)
        # lands inside the array: one warp, no wrap-around logic per pixel.
        x0, y0, x1, y1 = world_bounds
        self._origin = (math.floor(x0) - 2, math.floor(y0) - 2)
        ext_w = period[0] + math.ceil(x1 - x0) + 6
        ext_h = period[1] + math.ceil(y1 - y0) + 6
        ys = (np.arange(ext_h) + self._origin[1]) % period[1]
        xs = (np.arange(ext_w) + self._origin[0]) % period[0]
        # 4 channels everywhere: OpenCV's 3-channel float warp is twice as slow.
        self.texture = np.ascontiguousarray(rgba[ys][:, xs], np.float32)
        self.texture_luma4 = np.ascontiguousarray(luma4[ys][:, xs], np.float32)
        self.texture_luma1 = np.ascontiguousarray(self.texture_luma4[..., 0])
        self.objects = [
            self._make_object(rng, object_speed, rotation_speed) for _ in range(n_objects)
        ]
        for obj in self.objects:
            obj.sway = random_sway(sway_rng, *object_swing)

    def _make_object(self, rng: np.random.Generator, speed: float, spin: float) -> SceneObject:
        rgba = _sprite(rng)
        luma = np.zeros_like(rgba)
        luma[..., 0] = rgba[..., :3] @ LUMA
        luma[..., 1] = 1.0 - rgba[..., 3]
        rgba = _with_transmittance(rgba)
        w, h = self.world_size
        r = rgba.shape[0] / 4  # the centre may go a little past the border
        bounds = (r, r, max(r, w - r), max(r, h - r))
        direction = rng.uniform(0, 2 * math.pi)
        s = speed * rng.uniform(0.7, 1.3)
        return SceneObject(
            rgba=rgba,
            luma=luma,
            pos0=(rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])),
            velocity=(s * math.cos(direction), s * math.sin(direction)),
            angle0=rng.uniform(0, 360),
            spin=spin * rng.uniform(0.5, 1.5) * (1 if rng.random() < 0.5 else -1),
            bounds=bounds,
        )

    def max_speed_px_per_s(self) -> float:
        """Upper bound of how fast any scene point moves in the world (pan, object
        translation, and rotation at the sprite's corner)."""
        speed = math.hypot(*self.pan_speed) + self.shake.peak_speed()
        for obj in self.objects:
            radius = math.hypot(*obj.rgba.shape[:2]) / 2
            v = math.hypot(*obj.velocity) + obj.sway.peak_speed()
            v += math.radians(abs(obj.spin)) * radius
            speed = max(speed, v)
        return speed

    def background_offset(self, t_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Texel offset of the background at t_s: the view's x shows texel x + offset.
        The flow of the background from t1 to t2 is offset(t1) - offset(t2)."""
        sx, sy = self.shake.at(t_s)
        return self.pan_speed[0] * np.asarray(t_s) + sx, self.pan_speed[1] * np.asarray(t_s) + sy

    def _background(
        self, tex: np.ndarray, t_us: float, out_size: tuple[int, int], world_to_out: np.ndarray
    ) -> np.ndarray:
        bx, by = self.background_offset(t_us * 1e-6)
        ox = float(bx) % self.period[0] - self._origin[0]
        oy = float(by) % self.period[1] - self._origin[1]
        m = np.linalg.inv(world_to_out)
        m[0] += ox * m[2]
        m[1] += oy * m[2]
        if _is_affine(world_to_out):
            return cv2.warpAffine(tex, m[:2], out_size, flags=_FLAGS)
        return cv2.warpPerspective(tex, m, out_size, flags=_FLAGS)

    def render(
        self, t_us: float, out_size: tuple[int, int], world_to_out: np.ndarray
    ) -> np.ndarray:
        """Linear RGB intensity in [0, 1], float32 HxWx3, as seen through world_to_out."""
        return self.render_rgba(t_us, out_size, world_to_out)[..., :3]

    def render_rgba(
        self, t_us: float, out_size: tuple[int, int], world_to_out: np.ndarray
    ) -> np.ndarray:
        """render() as contiguous HxWx4 (the 4th channel is meaningless): cheaper to
        accumulate than a strided RGB view."""
        world_to_out = np.asarray(world_to_out, np.float64)
        out = self._background(self.texture, t_us, out_size, world_to_out)
        t_s = np.array([t_us * 1e-6])
        out_to_world = np.linalg.inv(world_to_out)
        for obj in self.objects:
            _draw(out[None], obj.rgba, obj, t_s, world_to_out, out_to_world, gray=False)
        return out

    def render_gray(
        self, t_us: float, out_size: tuple[int, int], world_to_out: np.ndarray
    ) -> np.ndarray:
        """Linear luminance, float32 HxW: luminance(render(...)) up to float rounding."""
        return self.render_gray_batch(t_us, out_size, world_to_out, count=1)[0]

    def render_gray_batch(
        self, t_us: int, out_size: tuple[int, int], world_to_out: np.ndarray, count: int = BATCH
    ) -> np.ndarray:
        """Luminance at t_us + j * step_us for j < count (count <= BATCH) as a contiguous
        [BATCH, H, W] float32 stack (planar, so later full-frame ops run at full speed);
        planes from count on hold the background only."""
        world_to_out = np.asarray(world_to_out, np.float64)
        if self.shake.active:
            planes = np.stack(
                [
                    self._background(
                        self.texture_luma1, t_us + j * self.step_us, out_size, world_to_out
                    )
                    for j in range(self.BATCH)
                ]
            )
        else:
            out = self._background(self.texture_luma4, t_us, out_size, world_to_out)
            planes = np.ascontiguousarray(np.moveaxis(out, -1, 0))
        t_s = (t_us + np.arange(count) * self.step_us) * 1e-6
        out_to_world = np.linalg.inv(world_to_out)
        for obj in self.objects:
            _draw(planes, obj.luma, obj, t_s, world_to_out, out_to_world, gray=True)
        return planes


def _is_affine(m: np.ndarray) -> bool:
    return m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1


def _draw(
    outs: np.ndarray,
    sprite: np.ndarray,
    obj: SceneObject,
    t_s: np.ndarray,
    world_to_out: np.ndarray,
    out_to_world: np.ndarray,
    gray: bool,
) -> None:
    """Composite one premultiplied sprite over outs[j] at instant t_s[j], warping only
    its bounding box. The pose maths is done for all instants at once (few numpy calls)."""
    out_h, out_w = outs.shape[1:3]
    sh, sw = sprite.shape[:2]
    world_from_sprite, sprite_from_world = obj.poses(t_s)
    sprite_from_out = sprite_from_world @ out_to_world
    out_from_sprite = world_to_out @ world_from_sprite
    p = _corners(sw, sh) @ np.swapaxes(out_from_sprite, 1, 2)  # [n, 4, 3]
    px, py = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    x0 = np.maximum(np.floor(px.min(1)), 0).astype(int)
    y0 = np.maximum(np.floor(py.min(1)), 0).astype(int)
    x1 = np.minimum(np.ceil(px.max(1)) + 1, out_w).astype(int)
    y1 = np.minimum(np.ceil(py.max(1)) + 1, out_h).astype(int)
    m = sprite_from_out  # roi -> sprite: shift by the roi origin
    m[:, :, 2] += m[:, :, 0] * x0[:, None] + m[:, :, 1] * y0[:, None]
    affine = _is_affine(world_to_out)
    for j, (a0, b0, a1, b1) in enumerate(
        zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), strict=True)
    ):
        if a1 <= a0 or b1 <= b0:
            continue
        size = (a1 - a0, b1 - b0)
        border = _GRAY_BORDER if gray else _RGBA_BORDER  # transmittance 1 outside the sprite
        if affine:
            warped = cv2.warpAffine(sprite, m[j, :2], size, flags=_FLAGS, borderValue=border)
        else:
            warped = cv2.warpPerspective(sprite, m[j], size, flags=_FLAGS, borderValue=border)
        roi = outs[j, b0:b1, a0:a1]
        if gray:
            roi *= warped[..., 1]
            roi += warped[..., 0]
        else:
            roi *= warped[..., 3:4]
            roi += warped


_GRAY_BORDER = (0.0, 1.0, 0.0, 0.0)
_RGBA_BORDER = (0.0, 0.0, 0.0, 1.0)
_corner_cache: dict[tuple[int, int], np.ndarray] = {}


def _corners(w: int, h: int) -> np.ndarray:
    c = _corner_cache.get((w, h))
    if c is None:
        c = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64)
        _corner_cache[(w, h)] = c
    return c
