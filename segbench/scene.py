"""The synthetic street scenes behind segbench's data sets (segbench.data writes them to disk).

Each image is a procedurally drawn street scene (sky, buildings, road, sidewalk, trees, poles,
signs, cars, people, ...).  Every class is painted with its Cityscapes palette colour, modulated
by per-object brightness, low-frequency illumination, texture and per-pixel noise, and the label
map matches the painted regions exactly; some objects get a thin 255 (ignore) outline in the
label map only.  So the task is learnable, not noise.  :func:`draw` is the one entry point.
"""

from __future__ import annotations

import cv2
import numpy as np


# Cityscapes train ids, same order and colours (RGB) as mmseg's CityscapesDataset.METAINFO.
CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
IGNORE_INDEX = 255
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)

_PALETTE_BGR = np.array([c[::-1] for c in PALETTE], dtype=np.float32)
# Texture amplitude per class (grey levels): how "busy" a surface looks.
_TEXTURE_AMP = np.array(
    [10, 8, 10, 8, 6, 4, 4, 3, 24, 16, 4, 8, 8, 5, 5, 5, 5, 5, 5], dtype=np.float32)



def _ipt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


class _Canvas:
    """Label maps plus a brightness ("shade") map that objects are painted onto."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.clean = np.full((h, w), SKY, np.uint8)   # class of every pixel (drives colours)
        self.label = np.full((h, w), SKY, np.uint8)   # clean + 255 ignore outlines
        self.shade = np.ones((h, w), np.float32)      # per-object brightness / details
        self.edge = max(1, int(round(h / 512)))       # ignore outline thickness
        self._kernel = np.ones((2 * self.edge + 1, 2 * self.edge + 1), np.uint8)

    def fill_poly(self, pts, cls: int, shade: float = 1.0) -> None:
        p = [np.asarray(pts, np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.clean, p, int(cls), cv2.LINE_8)
        cv2.fillPoly(self.label, p, int(cls), cv2.LINE_8)
        cv2.fillPoly(self.shade, p, float(shade), cv2.LINE_8)

    def shade_rect(self, x0, y0, x1, y1, shade: float) -> None:
        """Darken/lighten a region without changing its class (windows, clouds)."""
        cv2.rectangle(self.shade, _ipt(x0, y0), _ipt(x1, y1), float(shade), -1, cv2.LINE_8)

    def paint(self, cls: int, shapes: list, outline: bool = False) -> None:
        """Paint one object made of shapes.

        shapes: ("rect", x0, y0, x1, y1, shade) | ("ellipse", cx, cy, ax, ay, shade)
                | ("poly", [(x, y), ...], shade) | ("line", x0, y0, x1, y1, thickness, shade)
        Drawn in a local crop; later shapes override the shade of earlier ones.
        """
        xs: list[float] = []
        ys: list[float] = []
        for s in shapes:
            kind = s[0]
            if kind in ("rect", "line"):
                pad = s[5] if kind == "line" else 0
                xs += [s[1] - pad, s[3] + pad]
                ys += [s[2] - pad, s[4] + pad]
            elif kind == "ellipse":
                xs += [s[1] - s[3], s[1] + s[3]]
                ys += [s[2] - s[4], s[2] + s[4]]
            else:
                xs += [p[0] for p in s[1]]
                ys += [p[1] for p in s[1]]
        m = self.edge + 2
        x0 = max(0, int(np.floor(min(xs))) - m)
        y0 = max(0, int(np.floor(min(ys))) - m)
        x1 = min(self.w, int(np.ceil(max(xs))) + m + 1)
        y1 = min(self.h, int(np.ceil(max(ys))) + m + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shade = np.ones((y1 - y0, x1 - x0), np.float32)
        for s in shapes:
            kind, val = s[0], float(s[-1])
            if kind == "rect":
                a, b = _ipt(s[1] - x0, s[2] - y0), _ipt(s[3] - x0, s[4] - y0)
                cv2.rectangle(mask, a, b, 1, -1, cv2.LINE_8)
                cv2.rectangle(shade, a, b, val, -1, cv2.LINE_8)
            elif kind == "ellipse":
                c = _ipt(s[1] - x0, s[2] - y0)
                ax = (max(1, int(round(s[3]))), max(1, int(round(s[4]))))
                cv2.ellipse(mask, c, ax, 0, 0, 360, 1, -1, cv2.LINE_8)
                cv2.ellipse(shade, c, ax, 0, 0, 360, val, -1, cv2.LINE_8)
            elif kind == "line":
                a, b = _ipt(s[1] - x0, s[2] - y0), _ipt(s[3] - x0, s[4] - y0)
                t = max(1, int(round(s[5])))
                cv2.line(mask, a, b, 1, t, cv2.LINE_8)
                cv2.line(shade, a, b, val, t, cv2.LINE_8)
            else:
                p = [(np.asarray(s[1], np.float64) - (x0, y0)).round().astype(np.int32)]
                cv2.fillPoly(mask, p, 1, cv2.LINE_8)
                cv2.fillPoly(shade, p, val, cv2.LINE_8)
        m_ = mask.astype(bool)
        if not m_.any():
            return
        self.clean[y0:y1, x0:x1][m_] = cls
        lab = self.label[y0:y1, x0:x1]
        lab[m_] = cls
        self.shade[y0:y1, x0:x1][m_] = shade[m_]
        if outline:
            inner = cv2.erode(mask, self._kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            ring = m_ & ~inner.astype(bool)
            lab[ring] = IGNORE_INDEX


def _scene(rng: np.random.Generator, h: int, w: int) -> _Canvas:
    """Draw one street scene; returns the canvas (labels + shade)."""
    cv = _Canvas(h, w)
    u = rng.uniform
    horizon = h * u(0.36, 0.5)
    ground = h - horizon

    def s_at(y: float) -> float:  # perspective scale: 0 at the horizon, 1 at the bottom
        return max(0.0, (y - horizon) / ground)

    # Sky: already the background; a few lighter clouds.
    for _ in range(rng.integers(0, 4)):
        cx, cy = u(0, w), u(0, horizon * 0.6)
        cv.shade_rect(cx - u(0.03, 0.12) * w, cy - u(0.01, 0.03) * h,
                      cx + u(0.03, 0.12) * w, cy + u(0.01, 0.03) * h, u(1.05, 1.15))

    # Buildings: a skyline of blocks standing on the horizon, with window grids.
    x = -u(0, 0.05) * w
    while x < w:
        bw = u(0.06, 0.18) * w
        top = horizon - u(0.12, 0.38) * h
        top = max(top, 0.02 * h) if rng.random() < 0.8 else max(top, -0.1 * h)
        bshade = u(0.8, 1.15)
        cv.fill_poly([(x, top), (x + bw, top), (x + bw, horizon + 1), (x, horizon + 1)],
                     BUILDING, bshade)
        winw, winh = bw * u(0.05, 0.1), h * u(0.015, 0.03)
        ystep, xstep = winh * u(1.8, 2.6), winw * u(1.8, 2.6)
        if winw >= 1.5 and winh >= 1.5:
            wshade = bshade * u(0.6, 0.85)
            yy = top + ystep * 0.6
            while yy + winh < horizon - 0.03 * h:
                xx = x + xstep * 0.5
                while xx + winw < x + bw - xstep * 0.3:
                    cv.shade_rect(xx, yy, xx + winw, yy + winh, wshade)
                    xx += xstep
                yy += ystep
        x += bw + (u(0, 0.04) * w if rng.random() < 0.3 else 0)

    # Wall: a low wall in front of the buildings on one stretch.
    if rng.random() < 0.6:
        wx0 = u(-0.1, 0.7) * w
        wx1 = wx0 + u(0.1, 0.35) * w
        cv.fill_poly([(wx0, horizon - u(0.03, 0.07) * h), (wx1, horizon - u(0.03, 0.07) * h),
                      (wx1, horizon + 1), (wx0, horizon + 1)], WALL, u(0.85, 1.1))

    # Ground: sidewalk everywhere, terrain strips at the edges, the road in the middle.
    cv.fill_poly([(0, horizon), (w, horizon), (w, h), (0, h)], SIDEWALK, u(0.85, 1.1))
    vx = u(0.35, 0.65) * w               # vanishing point
    hw0 = u(0.01, 0.04) * w              # road half width at the horizon
    left_b = u(-0.15, 0.25) * w          # road edges at the bottom row
    right_b = u(0.75, 1.15) * w
    walk = u(0.12, 0.3) * w              # sidewalk width at the bottom
    road_l = lambda y: vx - hw0 + (left_b - (vx - hw0)) * s_at(y)   # noqa: E731
    road_r = lambda y: vx + hw0 + (right_b - (vx + hw0)) * s_at(y)  # noqa: E731
    for side in (-1, 1):
        if rng.random() < 0.6:
            if side < 0:
                pts = [(road_l(horizon) - 0.02 * w, horizon), (-1, horizon),
                       (-1, h), (left_b - walk, h)]
            else:
                pts = [(road_r(horizon) + 0.02 * w, horizon), (w + 1, horizon),
                       (w + 1, h), (right_b + walk, h)]
            cv.fill_poly(pts, TERRAIN, u(0.85, 1.1))
    cv.fill_poly([(vx - hw0, horizon), (vx + hw0, horizon), (right_b, h), (left_b, h)],
                 ROAD, u(0.85, 1.1))

    # Foreground objects, sorted far to near (painter's algorithm).
    objs: list[tuple[float, int, list, bool]] = []

    def add(base_y: float, cls: int, shapes: list, outline: bool | None = None) -> None:
        if outline is None:
            outline = bool(rng.random() < 0.5)
        objs.append((base_y, cls, shapes, outline))

    def sidewalk_x(y: float, side: int, frac: float) -> float:
        """x on the sidewalk at row y, frac 0 = kerb .. 1 = outer edge."""
        wd = walk * s_at(y) + 0.01 * w
        return road_l(y) - frac * wd if side < 0 else road_r(y) + frac * wd

    # Trees (vegetation): crown ellipse + trunk, behind the sidewalk.
    for _ in range(rng.integers(1, 6)):
        y = horizon + u(0.02, 0.35) * ground
        s, side = s_at(y), rng.choice((-1, 1))
        x = sidewalk_x(y, side, u(0.6, 1.3))
        th, cr = u(0.4, 0.7) * h * s + 0.05 * h, u(0.1, 0.2) * h * s + 0.03 * h
        tw = max(1.5, 0.015 * h * s)
        shapes = [("rect", x - tw, y - th, x + tw, y, u(0.6, 0.8)),
                  ("ellipse", x, y - th - cr * 0.5, cr * u(0.9, 1.5), cr, u(0.85, 1.15))]
        add(y - ground, VEGETATION, shapes)  # always behind street furniture
    # Hedges along the horizon.
    for _ in range(rng.integers(0, 3)):
        cx = u(0, 1) * w
        add(horizon - ground, VEGETATION,
            [("ellipse", cx, horizon, u(0.04, 0.12) * w, u(0.02, 0.05) * h, u(0.85, 1.1))])

    # Fence along one sidewalk.
    if rng.random() < 0.5:
        side = rng.choice((-1, 1))
        ya, yb = horizon + 0.02 * ground, horizon + u(0.3, 0.7) * ground
        xa, xb = sidewalk_x(ya, side, 1.0), sidewalk_x(yb, side, 1.0)
        ha, hb = 0.15 * h * s_at(ya) + 0.01 * h, 0.15 * h * s_at(yb) + 0.01 * h
        shapes: list = [("poly", [(xa, ya - ha), (xb, yb - hb), (xb, yb), (xa, ya)], 1.0)]
        for t in np.linspace(0, 1, 7):
            px, py, ph = xa + (xb - xa) * t, ya + (yb - ya) * t, ha + (hb - ha) * t
            shapes.append(("line", px, py - ph, px, py, max(1.0, 0.006 * h * s_at(py)), 0.8))
        add(ya, FENCE, shapes)

    # Poles with traffic signs or traffic lights.
    for _ in range(rng.integers(1, 5)):
        y = horizon + u(0.1, 0.8) * ground
        s, side = s_at(y), rng.choice((-1, 1))
        x = sidewalk_x(y, side, u(0.2, 0.7))
        ph, pw = u(0.5, 0.8) * h * s + 0.05 * h, max(1.0, 0.008 * h * s)
        top = y - ph
        add(y, POLE, [("rect", x - pw, top, x + pw, y, u(0.85, 1.1))])
        r = 0.05 * h * s + 0.008 * h
        kind = rng.random()
        if kind < 0.45:
            sx = x + side * -r
            if rng.random() < 0.5:
                add(y + 0.5, SIGN, [("ellipse", sx, top + r, r, r, u(0.9, 1.1))])
            else:
                add(y + 0.5, SIGN, [("rect", sx - r, top, sx + r, top + 1.4 * r, u(0.9, 1.1))])
        elif kind < 0.9:
            lw, lh = r * 0.55, r * 1.6
            sh = [("rect", x - lw, top, x + lw, top + lh, 1.0)]
            on = rng.integers(0, 3)
            for k in range(3):
                sh.append(("ellipse", x, top + lh * (k + 0.5) / 3, lw * 0.6, lw * 0.6,
                           1.15 if k == on else 0.75))
            add(y + 0.5, LIGHT, sh)

    # People on the sidewalk.
    for _ in range(rng.integers(0, 5)):
        y = horizon + u(0.1, 0.95) * ground
        s, side = s_at(y), rng.choice((-1, 1))
        x = sidewalk_x(y, side, u(0.1, 0.9))
        add(y, PERSON, _person(x, y, u(0.2, 0.3) * h * s + 0.02 * h, rng))

    # Cyclists / motorcyclists near the kerb: the vehicle and its rider are separate objects.
    for _ in range(rng.integers(0, 3)):
        y = horizon + u(0.1, 0.9) * ground
        s = s_at(y)
        side = rng.choice((-1, 1))
        x = (road_l(y) + (road_r(y) - road_l(y)) * u(0.05, 0.2) if side < 0
             else road_r(y) - (road_r(y) - road_l(y)) * u(0.05, 0.2))
        size = u(0.12, 0.18) * h * s + 0.015 * h
        moto = rng.random() < 0.4
        wr = size * 0.3
        t = max(1.0, size * (0.06 if not moto else 0.12))
        veh = [("ellipse", x - size * 0.45, y - wr, wr, wr, 0.5),
               ("ellipse", x + size * 0.45, y - wr, wr, wr, 0.5),
               ("line", x - size * 0.45, y - wr, x, y - size * 0.7, t, 1.0),
               ("line", x + size * 0.45, y - wr, x, y - size * 0.7, t, 1.0)]
        if moto:
            veh.append(("ellipse", x, y - size * 0.6, size * 0.4, size * 0.22, 1.0))
        add(y, MOTORCYCLE if moto else BICYCLE, veh)
        if rng.random() < 0.85:
            add(y + 0.5, RIDER, _person(x, y - size * 0.55, size * 1.4, rng, legs=False))

    # Vehicles on the road.
    n_veh = int(rng.integers(1, 7))
    for _ in range(n_veh):
        y = horizon + u(0.08, 1.0) * ground
        s = s_at(y)
        x = road_l(y) + (road_r(y) - road_l(y)) * u(0.15, 0.85)
        r = rng.random()
        if r < 0.65:
            add(y, CAR, _car(x, y, u(0.32, 0.42) * h * s + 0.02 * h, rng))
        elif r < 0.8:
            add(y, TRUCK, _truck(x, y, u(0.5, 0.65) * h * s + 0.03 * h, rng))
        else:
            add(y, BUS, _bus(x, y, u(0.75, 0.95) * h * s + 0.04 * h, rng))
    # Occasionally a tram/train crossing far away.
    if rng.random() < 0.2:
        y = horizon + u(0.05, 0.2) * ground
        s = s_at(y)
        bh = 0.35 * h * s + 0.03 * h
        x0 = u(-0.2, 0.5) * w
        x1 = x0 + u(0.3, 0.6) * w
        shapes = [("rect", x0, y - bh, x1, y, u(0.85, 1.1))]
        wx = x0 + bh * 0.2
        while wx + bh * 0.3 < x1:
            shapes.append(("rect", wx, y - bh * 0.8, wx + bh * 0.3, y - bh * 0.45, 0.6))
            wx += bh * 0.45
        add(y, TRAIN, shapes)

    objs.sort(key=lambda o: o[0])
    for _, cls, shapes, outline in objs:
        cv.paint(cls, shapes, outline)
    return cv


def _person(x: float, y: float, ht: float, rng, legs: bool = True) -> list:
    sh = rng.uniform(0.75, 1.15)
    head = ht * 0.08
    body_h = ht * (0.38 if legs else 0.55)
    body_y = y - ht + 2 * head + body_h / 2
    shapes = [("ellipse", x, y - ht + head, head, head, sh * 1.1),
              ("ellipse", x, body_y, ht * 0.12, body_h / 2, sh)]
    if legs:
        lw = max(1.0, ht * 0.035)
        hip = body_y + body_h * 0.4
        spread = ht * rng.uniform(0.03, 0.12)
        shapes += [("line", x - ht * 0.04, hip, x - spread, y, lw, sh * 0.8),
                   ("line", x + ht * 0.04, hip, x + spread, y, lw, sh * 0.8)]
    return shapes


def _car(x: float, y: float, cw: float, rng) -> list:
    ch = cw * 0.42
    sh = rng.uniform(0.7, 1.25)
    wr = ch * 0.22
    return [("rect", x - cw / 2, y - ch * 0.65, x + cw / 2, y - wr * 0.6, sh),
            ("poly", [(x - cw * 0.33, y - ch * 0.64), (x - cw * 0.22, y - ch),
                      (x + cw * 0.22, y - ch), (x + cw * 0.33, y - ch * 0.64)], sh),
            ("rect", x - cw * 0.25, y - ch * 0.92, x + cw * 0.25, y - ch * 0.68, sh * 0.7),
            ("ellipse", x - cw * 0.32, y - wr, wr * 1.1, wr, 0.45),
            ("ellipse", x + cw * 0.32, y - wr, wr * 1.1, wr, 0.45)]


def _truck(x: float, y: float, tw: float, rng) -> list:
    th = tw * 0.7
    sh = rng.uniform(0.8, 1.2)
    wr = th * 0.12
    return [("rect", x - tw / 2, y - th, x + tw * 0.18, y - wr, sh),
            ("rect", x + tw * 0.2, y - th * 0.6, x + tw / 2, y - wr, sh * 0.9),
            ("rect", x + tw * 0.27, y - th * 0.55, x + tw * 0.45, y - th * 0.35, sh * 0.65),
            ("ellipse", x - tw * 0.3, y - wr, wr, wr, 0.45),
            ("ellipse", x + tw * 0.35, y - wr, wr, wr, 0.45)]


def _bus(x: float, y: float, bw: float, rng) -> list:
    bh = bw * 0.55
    sh = rng.uniform(0.85, 1.2)
    wr = bh * 0.1
    shapes = [("rect", x - bw / 2, y - bh, x + bw / 2, y - wr, sh)]
    wx = x - bw * 0.45
    while wx + bw * 0.1 < x + bw * 0.45:
        shapes.append(("rect", wx, y - bh * 0.85, wx + bw * 0.09, y - bh * 0.55, sh * 0.7))
        wx += bw * 0.12
    shapes += [("ellipse", x - bw * 0.33, y - wr, wr, wr, 0.45),
               ("ellipse", x + bw * 0.33, y - wr, wr, wr, 0.45)]
    return shapes


def _render(rng: np.random.Generator, cv: _Canvas) -> np.ndarray:
    """Colour the scene: palette colour x shade x illumination + texture + noise (BGR uint8)."""
    h, w = cv.h, cv.w
    pal = _PALETTE_BGR * rng.uniform(0.92, 1.08, (19, 1)).astype(np.float32)
    pal += rng.uniform(-6, 6, (19, 3)).astype(np.float32)
    # Low-frequency illumination (soft shadows) and mid-frequency texture.
    gh, gw = max(2, h // 128), max(2, w // 128)
    illum = cv2.resize(rng.uniform(0.88, 1.12, (gh, gw)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    th, tw = max(2, h // 4), max(2, w // 4)
    tex = cv2.resize(rng.standard_normal((th, tw), dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_NEAREST)
    gain = cv.shade
    gain *= illum
    img = pal[cv.clean]                      # (h, w, 3) float32
    img *= gain[..., None]
    tex *= _TEXTURE_AMP[cv.clean]
    img += tex[..., None]
    img += rng.integers(-7, 8, (h, w, 3), dtype=np.int8)   # per-pixel sensor noise
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def draw(seed: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(BGR image, label map) for image `index` of a set; independent of other images."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    cv = _scene(rng, size[0], size[1])
    img = _render(rng, cv)
    return img, cv.label
