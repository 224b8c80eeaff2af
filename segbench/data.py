"""Training data for segbench: a synthetic Cityscapes-layout set, or a link to the real one.

Real Cityscapes needs a login to download, so :func:`generate` writes a synthetic set in
exactly the layout mmseg 1.2.2's ``CityscapesDataset`` reads::

    ROOT/leftImg8bit/train/<city>/<city>_<seq:06d>_000019_leftImg8bit.png        RGB, H x W
    ROOT/gtFine/train/<city>/<city>_<seq:06d>_000019_gtFine_labelTrainIds.png    uint8, 0..18 / 255
    ROOT/.segbench-synthetic.json                                                marker (last)

Each image is a procedurally drawn street scene (sky, buildings, road, sidewalk, trees, poles,
signs, cars, people, ...).  Every class is painted with its Cityscapes palette colour, modulated
by per-object brightness, low-frequency illumination, texture and per-pixel noise, and the label
map matches the painted regions exactly; some objects get a thin 255 (ignore) outline in the
label map only.  So the task is learnable, not noise.

:func:`link_real` validates a real Cityscapes tree and symlinks it into place, :func:`check`
validates any data root before training.  CLI: ``python -m segbench.data {generate,link,check}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CLASSES",
    "PALETTE",
    "IGNORE_INDEX",
    "MARKER_NAME",
    "DataError",
    "generate",
    "link_real",
    "check",
    "main",
]

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

MARKER_NAME = ".segbench-synthetic.json"
MARKER_FORMAT = "segbench-synthetic-cityscapes"
# Bump when the drawing changes so that existing synthetic sets are regenerated.
GENERATOR_VERSION = 1

IMG_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
IMG_DIR = Path("leftImg8bit") / "train"
LABEL_DIR = Path("gtFine") / "train"
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fixed: same bytes every run, fast
PNG_IEND = b"IEND\xaeB`\x82"
MIN_SIZE = 32

_PALETTE_BGR = np.array([c[::-1] for c in PALETTE], dtype=np.float32)
# Texture amplitude per class (grey levels): how "busy" a surface looks.
_TEXTURE_AMP = np.array(
    [10, 8, 10, 8, 6, 4, 4, 3, 24, 16, 4, 8, 8, 5, 5, 5, 5, 5, 5], dtype=np.float32)


class DataError(ValueError):
    """A data root or request is unusable; the message is one line naming the path."""


# --------------------------------------------------------------------------- drawing


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


def _draw_image(seed: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(BGR image, label map) for image `index` of a set; independent of other images."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    cv = _scene(rng, size[0], size[1])
    img = _render(rng, cv)
    return img, cv.label


# --------------------------------------------------------------------------- generate


def _names(n_images: int, cities: tuple[str, ...]) -> list[tuple[str, str]]:
    """[(city, stem)] with images spread round-robin over the cities."""
    out = []
    for i in range(n_images):
        city = cities[i % len(cities)]
        out.append((city, f"{city}_{i // len(cities):06d}_000019"))
    return out


def _read_marker(root: Path) -> dict | None:
    try:
        data = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, data: dict) -> None:
    tmp = root / (MARKER_NAME + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / MARKER_NAME)


def _params(n_images: int, seed: int, size: tuple[int, int], cities) -> dict:
    return {"version": GENERATOR_VERSION, "n_images": n_images, "seed": seed,
            "size": [size[0], size[1]], "cities": list(cities)}


def _has_files(d: Path) -> bool:
    return d.is_dir() and any(p.is_file() for p in d.rglob("*"))


def generate(root: Path, n_images: int = 30, seed: int = 0,
             size: tuple[int, int] = (1024, 2048),
             cities=("aachen", "bochum", "bremen")) -> dict:
    """Write (or reuse) a synthetic Cityscapes-layout training set under `root`.

    size is (height, width).  Returns a summary dict; "reused" is True when an identical set
    (same parameters, all files present with the recorded sizes) was already there.
    """
    t0 = time.perf_counter()
    root = Path(root)
    cities = tuple(cities)
    try:
        size = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{root}: size must be (height, width), got {size!r}") from None
    if int(n_images) < 1:
        raise DataError(f"{root}: n_images must be >= 1, got {n_images}")
    n_images = int(n_images)
    if min(size) < MIN_SIZE:
        raise DataError(f"{root}: size {size[0]}x{size[1]} (HxW) is too small, "
                        f"minimum is {MIN_SIZE}x{MIN_SIZE}")
    if not cities or any(not re.fullmatch(r"[a-z][a-z0-9-]*", c) for c in cities):
        raise DataError(f"{root}: city names must be lowercase words without '_' or '/', "
                        f"got {list(cities)}")
    seed = int(seed)
    params = _params(n_images, seed, size, cities)
    names = _names(n_images, cities)
    rels = []
    for city, stem in names:
        rels.append((IMG_DIR / city / (stem + IMG_SUFFIX)).as_posix())
        rels.append((LABEL_DIR / city / (stem + LABEL_SUFFIX)).as_posix())

    summary = {"root": str(root), "n_images": n_images, "seed": seed, "size": list(size),
               "cities": list(cities), "files": len(rels)}

    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a directory")
    marker = _read_marker(root) if root.is_dir() else None
    if marker is not None and marker.get("complete") and marker.get("params") == params:
        manifest = marker.get("manifest") or {}
        if set(manifest) == set(rels) and all(
                (root / r).is_file() and (root / r).stat().st_size == manifest[r] for r in rels):
            summary.update(reused=True, digest=marker.get("digest"),
                           seconds=time.perf_counter() - t0)
            return summary

    if root.is_dir() and not (root / MARKER_NAME).exists() and (
            _has_files(root / "leftImg8bit") or _has_files(root / "gtFine")):
        raise DataError(f"{root}: contains a leftImg8bit/gtFine tree that is not a segbench "
                        f"synthetic set (no {MARKER_NAME}); refusing to overwrite it")

    root.mkdir(parents=True, exist_ok=True)
    # Claim the root first: a crash from here on leaves an incomplete (non-reusable) marker.
    _write_marker(root, {"format": MARKER_FORMAT, "complete": False, "params": params})
    # Remove stale files of a previous synthetic set (e.g. a larger n or other cities).
    wanted = set(rels)
    for sub, suffix in ((IMG_DIR, IMG_SUFFIX), (LABEL_DIR, LABEL_SUFFIX)):
        d = root / sub
        if d.is_dir():
            for p in d.rglob("*" + suffix):
                if p.relative_to(root).as_posix() not in wanted:
                    p.unlink()
            for p in sorted(d.iterdir()):
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
    for city in cities:
        (root / IMG_DIR / city).mkdir(parents=True, exist_ok=True)
        (root / LABEL_DIR / city).mkdir(parents=True, exist_ok=True)

    def work(i: int) -> list[tuple[str, str, int]]:
        img, lab = _draw_image(seed, i, size)
        out = []
        for rel, arr in ((rels[2 * i], img), (rels[2 * i + 1], lab)):
            ok, buf = cv2.imencode(".png", arr, PNG_PARAMS)
            if not ok:  # pragma: no cover - cv2 failure
                raise DataError(f"{root / rel}: PNG encoding failed")
            data = buf.tobytes()
            (root / rel).write_bytes(data)
            out.append((rel, hashlib.sha256(data).hexdigest(), len(data)))
        return out

    workers = max(1, min(n_images, os.cpu_count() or 1, 8))
    if workers == 1:
        results = [work(i) for i in range(n_images)]
    else:
        with ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(work, range(n_images)))
    entries = sorted(e for r in results for e in r)
    digest = hashlib.sha256(
        "".join(f"{rel}\t{h}\n" for rel, h, _ in entries).encode()).hexdigest()
    seconds = time.perf_counter() - t0
    _write_marker(root, {"format": MARKER_FORMAT, "complete": True, "params": params,
                         "files": len(entries), "digest": "sha256:" + digest,
                         "manifest": {rel: n for rel, _, n in entries},
                         "generation_seconds": round(seconds, 3)})
    summary.update(reused=False, digest="sha256:" + digest, seconds=time.perf_counter() - t0)
    return summary


# --------------------------------------------------------------------------- link / check


def _pairs(root: Path, pattern: str) -> tuple[list[Path], list[Path]]:
    """(images, images without a labelTrainIds file) under root/leftImg8bit/train."""
    images = sorted((root / IMG_DIR).glob(pattern))
    missing = [p for p in images if not _label_for(root, p).is_file()]
    return images, missing


def _label_for(root: Path, img: Path, suffix: str = LABEL_SUFFIX) -> Path:
    rel = img.relative_to(root / IMG_DIR)
    return root / LABEL_DIR / rel.parent / (rel.name[: -len(IMG_SUFFIX)] + suffix)


def link_real(cityscapes_root: Path, dest: Path) -> dict:
    """Validate a real Cityscapes tree (train split with labelTrainIds) and symlink dest to it."""
    t0 = time.perf_counter()
    src = Path(cityscapes_root).expanduser()
    dest = Path(dest)
    if not src.is_dir():
        raise DataError(f"{src}: Cityscapes root does not exist or is not a directory")
    src = src.resolve()
    if not (src / IMG_DIR).is_dir():
        raise DataError(f"{src}: no {IMG_DIR.as_posix()} directory; expected the Cityscapes "
                        f"layout leftImg8bit/train/<city>/*{IMG_SUFFIX}")
    images, missing = _pairs(src, "*/*" + IMG_SUFFIX)
    if not images:
        raise DataError(f"{src}: no {IMG_DIR.as_posix()}/<city>/*{IMG_SUFFIX} images")
    if missing:
        n_ids = sum(_label_for(src, p, LABEL_IDS_SUFFIX).is_file() for p in missing)
        first = _label_for(src, missing[0]).relative_to(src)
        if n_ids:
            raise DataError(
                f"{src}: {len(missing)} of {len(images)} train images have only "
                f"*{LABEL_IDS_SUFFIX} and no *{LABEL_SUFFIX} (e.g. {first}); convert them with "
                f"cityscapesscripts' createTrainIdLabelImgs (CITYSCAPES_DATASET={src} "
                f"csCreateTrainIdLabelImgs) or mmseg's tools/dataset_converters/cityscapes.py "
                f"{src}")
        raise DataError(f"{src}: {len(missing)} of {len(images)} train images have no "
                        f"label (e.g. missing {first})")
    try:
        dest_res = dest.resolve()
    except OSError:
        dest_res = dest.absolute()
    if dest_res == src and not dest.is_symlink():
        raise DataError(f"{dest}: is the Cityscapes root itself; refusing to replace it")

    replaced = None
    if dest.is_symlink():
        replaced = "symlink"
    elif dest.exists():
        if not dest.is_dir():
            raise DataError(f"{dest}: exists and is not a directory or symlink; "
                            f"refusing to replace it")
        if not (dest / MARKER_NAME).is_file():
            raise DataError(f"{dest}: is a real directory that is not a segbench synthetic "
                            f"set (no {MARKER_NAME}); refusing to replace it")
        if src == dest_res or dest_res in src.parents:
            raise DataError(f"{dest}: contains the Cityscapes root {src}; refusing to replace it")
        replaced = "synthetic"
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-link{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(src, tmp, target_is_directory=True)
    os.replace(tmp, dest)
    cities = sorted({p.parent.name for p in images})
    return {"dest": str(dest), "target": str(src), "images": len(images),
            "labels": len(images), "cities": len(cities), "replaced": replaced,
            "seconds": time.perf_counter() - t0}


def _png_problem(path: Path, label: bool) -> str | None:
    """Why this PNG is unusable, or None."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "not a PNG file"
    if not data.rstrip(b"\0").endswith(PNG_IEND):
        return f"truncated PNG ({len(data)} bytes, no IEND chunk)"
    arr = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_UNCHANGED if label else cv2.IMREAD_COLOR)
    if arr is None:
        return "corrupt PNG (cv2 cannot decode it)"
    if label:
        if arr.ndim != 2:
            return f"label map has {arr.shape[2]} channels, expected 1"
        if arr.dtype != np.uint8:
            return f"label map is {arr.dtype}, expected uint8"
        bad = np.setdiff1d(np.unique(arr), np.r_[np.arange(19), IGNORE_INDEX])
        if bad.size:
            return f"label values {bad[:5].tolist()} outside 0..18 and 255 (not labelTrainIds?)"
    return None


def check(root: Path, deep: bool = False) -> dict:
    """Validate a data root for training; raise DataError naming the path and the problem."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data root does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a directory")
    if not (root / IMG_DIR).is_dir():
        raise DataError(f"{root}: missing {IMG_DIR.as_posix()} directory "
                        f"(expected Cityscapes layout)")
    # Recursive, like mmseg's BaseSegDataset.load_data_list.
    images, missing = _pairs(root, "**/*" + IMG_SUFFIX)
    if not images:
        raise DataError(f"{root}: no *{IMG_SUFFIX} images under {IMG_DIR.as_posix()}")
    if missing:
        raise DataError(f"{root}: {len(missing)} of {len(images)} images have no label, e.g. "
                        f"{missing[0]} (expected {_label_for(root, missing[0])})")
    labels = sorted((root / LABEL_DIR).glob("**/*" + LABEL_SUFFIX))
    if deep:
        for img in images:
            for path, is_label in ((img, False), (_label_for(root, img), True)):
                why = _png_problem(path, is_label)
                if why:
                    raise DataError(f"{path}: {why}")
            a = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(_label_for(root, img)), cv2.IMREAD_UNCHANGED)
            if a is None or b is None or a.shape[:2] != b.shape[:2]:
                raise DataError(f"{img}: image and label sizes differ "
                                f"({None if a is None else a.shape[:2]} vs "
                                f"{None if b is None else b.shape[:2]})")
    marker = _read_marker(root)
    return {"root": str(root), "images": len(images), "labels": len(labels),
            "cities": len({p.parent.name for p in images}), "deep": bool(deep),
            "synthetic": marker is not None,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- CLI


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 1 (not argparse's usage + exit 2)
        raise _UsageError(f"{self.prog}: {message}")


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW like 1024x2048, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m segbench.data",
                description="Synthetic / real Cityscapes data for segbench.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="write a synthetic Cityscapes-layout training set")
    g.add_argument("root", type=Path)
    g.add_argument("--n", type=int, default=30, help="number of images (default 30)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--size", type=_parse_size, default=(1024, 2048),
                   help="HxW (default 1024x2048)")
    ln = sub.add_parser("link", help="validate a real Cityscapes tree and symlink DEST to it")
    ln.add_argument("cityscapes_root", type=Path)
    ln.add_argument("dest", type=Path)
    c = sub.add_parser("check", help="validate a data root for training")
    c.add_argument("root", type=Path)
    c.add_argument("--deep", action="store_true", help="also decode every image and label")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _build_parser().parse_args(argv)
        if args.cmd == "generate":
            r = generate(args.root, n_images=args.n, seed=args.seed, size=args.size)
            h, w = r["size"]
            verb = "reused" if r["reused"] else "generated"
            print(f"data: {verb} {r['n_images']} synthetic Cityscapes images ({w}x{h} px, seed "
                  f"{r['seed']}) in {args.root} in {r['seconds']:.1f} s")
        elif args.cmd == "link":
            r = link_real(args.cityscapes_root, args.dest)
            extra = f", replaced a {r['replaced']}" if r["replaced"] else ""
            print(f"data: linked {r['dest']} -> {r['target']} ({r['images']} train images "
                  f"with labelTrainIds in {r['cities']} cities{extra}) in {r['seconds']:.1f} s")
        else:
            r = check(args.root, deep=args.deep)
            kind = "synthetic" if r["synthetic"] else "real"
            how = ", all decoded" if r["deep"] else ""
            print(f"data: ok: {args.root} has {r['images']} train images with labels in "
                  f"{r['cities']} cities ({kind}{how}) in {r['seconds']:.1f} s")
        return 0
    except (DataError, _UsageError) as e:
        print(f"data: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"data: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("data: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
