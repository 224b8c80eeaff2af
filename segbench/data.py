"""Training data for segbench: synthetic sets in the datasets' real layouts, or links to real ones.

Real Cityscapes needs a login to download and ADE20K is large, so :func:`generate` writes a
synthetic set (segbench.scene draws its street scenes) in exactly the layout mmseg 1.2.2's
``CityscapesDataset`` or ``ADE20KDataset`` reads::

    cityscapes: ROOT/leftImg8bit/train/<city>/<city>_<seq:06d>_000019_leftImg8bit.png     RGB
                ROOT/gtFine/train/<city>/<city>_<seq:06d>_000019_gtFine_labelTrainIds.png uint8 0..18 / 255
    ade20k:     ROOT/images/training/ADE_train_<n:08d>.jpg                                 RGB (JPEG)
                ROOT/annotations/training/ADE_train_<n:08d>.png      uint8 0 (other) / 1..150 (class + 1)
    both:       ROOT/.segbench-synthetic.json                                               marker (last)

ADE20K's labels follow its reduce_zero_label convention (0 is "other" and ignored; class k is
stored as k + 1); the scenes use 19 of its 150 classes. :func:`link_real` validates a real tree of
either layout and symlinks it into place, :func:`check` validates any data root before training.
CLI: ``python -m segbench.data {generate,link,check}``.
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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segbench.scene import CLASSES, IGNORE_INDEX, PALETTE, draw

__all__ = ["ADE20K", "CITYSCAPES", "CLASSES", "IGNORE_INDEX", "LAYOUTS", "MARKER_NAME", "PALETTE",
           "DataError", "check", "detect_layout", "generate", "link_real", "main"]

MARKER_NAME = ".segbench-synthetic.json"
# Bump when the drawing changes so that existing synthetic sets are regenerated.
GENERATOR_VERSION = 1
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fixed: same bytes every run, fast
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95]
PNG_IEND = b"IEND\xaeB`\x82"
MIN_SIZE = 32
ADE20K_CLASSES = 150


class DataError(ValueError):
    """A data root or request is unusable; the message is one line naming the path."""


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps its training images and labels, as mmseg's dataset class reads them."""
    name: str
    img_dir: Path
    label_dir: Path
    img_suffix: str
    label_suffix: str
    labels: str                      # what a label file holds (for error messages)
    max_label: int                   # label values 0..max_label, plus ignore_value
    ignore_value: int | None
    by_city: bool                    # Cityscapes: <split>/<city>/<stem>; ADE20K: flat

    def image_rel(self, stem: str) -> Path:
        return self.img_dir / (stem + self.img_suffix)

    def label_rel(self, stem: str) -> Path:
        return self.label_dir / (stem + self.label_suffix)

    def label_file(self, scene_label: np.ndarray) -> np.ndarray:
        """The scene's train ids (0..18, 255 ignore) in this layout's label convention."""
        if self.name == "cityscapes":
            return scene_label
        # ADE20K's reduce_zero_label: 0 is "other" (ignored), class k is stored as k + 1
        return np.where(scene_label == IGNORE_INDEX, 0, scene_label + 1).astype(np.uint8)


CITYSCAPES = Layout("cityscapes", Path("leftImg8bit") / "train", Path("gtFine") / "train",
                    "_leftImg8bit.png", "_gtFine_labelTrainIds.png", "labelTrainIds", 18,
                    IGNORE_INDEX, True)
ADE20K = Layout("ade20k", Path("images") / "training", Path("annotations") / "training",
                ".jpg", ".png", "ADE20K class ids (0 = other, 1..150)", ADE20K_CLASSES, None, False)
LAYOUTS = {"cityscapes": CITYSCAPES, "ade20k": ADE20K}
TITLE = {"cityscapes": "Cityscapes", "ade20k": "ADE20K"}
# Cityscapes' frames; ADE20K's images are about 512 px on the short side (its configs' scale)
DEFAULT_SIZE = {"cityscapes": (1024, 2048), "ade20k": (512, 683)}
# the names the rest of segbench (and its tests) use for the Cityscapes layout
IMG_SUFFIX, LABEL_SUFFIX = CITYSCAPES.img_suffix, CITYSCAPES.label_suffix
IMG_DIR, LABEL_DIR = CITYSCAPES.img_dir, CITYSCAPES.label_dir
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def detect_layout(root: Path) -> Layout | None:
    """The layout whose image directory ``root`` has, or None."""
    return next((lay for lay in LAYOUTS.values() if (Path(root) / lay.img_dir).is_dir()), None)


# --------------------------------------------------------------------------- generate


def _stems(n_images: int, cities: tuple[str, ...], layout: Layout) -> list[str]:
    """Image stems relative to the layout's directories; Cityscapes' spread over the cities."""
    if not layout.by_city:
        return [f"ADE_train_{i + 1:08d}" for i in range(n_images)]
    return [f"{cities[i % len(cities)]}/{cities[i % len(cities)]}_{i // len(cities):06d}_000019"
            for i in range(n_images)]


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


def _params(n_images: int, seed: int, size: tuple[int, int], cities, layout: Layout) -> dict:
    params = {"version": GENERATOR_VERSION, "n_images": n_images, "seed": seed,
              "size": [size[0], size[1]], "cities": list(cities)}
    if layout is not CITYSCAPES:   # a Cityscapes set made before layouts existed stays reusable
        params.update(layout=layout.name, cities=[])
    return params


def _has_files(d: Path) -> bool:
    return d.is_dir() and any(p.is_file() for p in d.rglob("*"))


def _check_request(root: Path, n_images, size, cities) -> tuple[int, tuple[int, int]]:
    try:
        size = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{root}: size must be (height, width), got {size!r}") from None
    if int(n_images) < 1:
        raise DataError(f"{root}: n_images must be >= 1, got {n_images}")
    if min(size) < MIN_SIZE:
        raise DataError(f"{root}: size {size[0]}x{size[1]} (HxW) is too small, "
                        f"minimum is {MIN_SIZE}x{MIN_SIZE}")
    if not cities or any(not re.fullmatch(r"[a-z][a-z0-9-]*", c) for c in cities):
        raise DataError(f"{root}: city names must be lowercase words without '_' or '/', "
                        f"got {list(cities)}")
    return int(n_images), size


def _reusable(root: Path, params: dict, rels: list[str]) -> dict | None:
    """The marker of an identical complete set already at ``root`` (all files, recorded sizes)."""
    marker = _read_marker(root) if root.is_dir() else None
    if marker is None or not marker.get("complete") or marker.get("params") != params:
        return None
    manifest = marker.get("manifest") or {}
    ok = set(manifest) == set(rels) and all(
        (root / r).is_file() and (root / r).stat().st_size == manifest[r] for r in rels)
    return marker if ok else None


def _clear_stale(root: Path, layout: Layout, wanted: set[str]) -> None:
    """Remove the files of a previous synthetic set (e.g. a larger n or other cities)."""
    for sub, suffix in ((layout.img_dir, layout.img_suffix), (layout.label_dir, layout.label_suffix)):
        d = root / sub
        if not d.is_dir():
            continue
        for p in d.rglob("*" + suffix):
            if p.relative_to(root).as_posix() not in wanted:
                p.unlink()
        for p in sorted(d.iterdir()):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def generate(root: Path, n_images: int = 30, seed: int = 0,
             size: tuple[int, int] = (1024, 2048),
             cities=("aachen", "bochum", "bremen"), layout: str = "cityscapes") -> dict:
    """Write (or reuse) a synthetic training set under `root` in a layout of :data:`LAYOUTS`.

    size is (height, width).  Returns a summary dict; "reused" is True when an identical set
    (same parameters, all files present with the recorded sizes) was already there.
    """
    t0 = time.perf_counter()
    root, cities = Path(root), tuple(cities)
    if layout not in LAYOUTS:
        raise DataError(f"{root}: layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    lay = LAYOUTS[layout]
    n_images, size = _check_request(root, n_images, size, cities)
    seed = int(seed)
    params = _params(n_images, seed, size, cities, lay)
    stems = _stems(n_images, cities, lay)
    rels = [r.as_posix() for stem in stems for r in (lay.image_rel(stem), lay.label_rel(stem))]
    summary = {"root": str(root), "layout": layout, "n_images": n_images, "seed": seed,
               "size": list(size), "cities": list(cities) if lay.by_city else [], "files": len(rels)}
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a directory")
    marker = _reusable(root, params, rels)
    if marker is not None:
        summary.update(reused=True, digest=marker.get("digest"), seconds=time.perf_counter() - t0)
        return summary
    top = (lay.img_dir.parts[0], lay.label_dir.parts[0])
    if root.is_dir() and not (root / MARKER_NAME).exists() and any(_has_files(root / t) for t in top):
        raise DataError(f"{root}: contains a {'/'.join(top)} tree that is not a segbench "
                        f"synthetic set (no {MARKER_NAME}); refusing to overwrite it")
    root.mkdir(parents=True, exist_ok=True)
    fmt = f"segbench-synthetic-{layout}"
    # Claim the root first: a crash from here on leaves an incomplete (non-reusable) marker.
    _write_marker(root, {"format": fmt, "complete": False, "params": params})
    _clear_stale(root, lay, set(rels))
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)

    def work(i: int) -> list[tuple[str, str, int]]:
        img, lab = draw(seed, i, size)
        out = []
        for rel, arr in ((rels[2 * i], img), (rels[2 * i + 1], lay.label_file(lab))):
            ext = Path(rel).suffix
            ok, buf = cv2.imencode(ext, arr, JPEG_PARAMS if ext == ".jpg" else PNG_PARAMS)
            if not ok:  # pragma: no cover - cv2 failure
                raise DataError(f"{root / rel}: {ext} encoding failed")
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
    digest = "sha256:" + hashlib.sha256(
        "".join(f"{rel}\t{h}\n" for rel, h, _ in entries).encode()).hexdigest()
    seconds = time.perf_counter() - t0
    _write_marker(root, {"format": fmt, "complete": True, "params": params,
                         "files": len(entries), "digest": digest,
                         "manifest": {rel: n for rel, _, n in entries},
                         "generation_seconds": round(seconds, 3)})
    summary.update(reused=False, digest=digest, seconds=time.perf_counter() - t0)
    return summary


# --------------------------------------------------------------------------- link / check


def _pairs(root: Path, pattern: str, layout: Layout = CITYSCAPES) -> tuple[list[Path], list[Path]]:
    """(images, images without a label file) under root/<layout's image directory>."""
    images = sorted((root / layout.img_dir).glob(pattern))
    missing = [p for p in images if not _label_for(root, p, layout=layout).is_file()]
    return images, missing


def _label_for(root: Path, img: Path, suffix: str | None = None, layout: Layout = CITYSCAPES) -> Path:
    rel = img.relative_to(root / layout.img_dir)
    return (root / layout.label_dir / rel.parent
            / (rel.name[: -len(layout.img_suffix)] + (suffix or layout.label_suffix)))


def _layout_of(root: Path, what: str) -> Layout:
    lay = detect_layout(root)
    if lay is None:
        raise DataError(f"{root}: no {CITYSCAPES.img_dir.as_posix()} (Cityscapes) or "
                        f"{ADE20K.img_dir.as_posix()} (ADE20K) directory; expected {what}")
    return lay


def _missing_labels(src: Path, lay: Layout, images: list[Path], missing: list[Path]) -> DataError:
    first = _label_for(src, missing[0], layout=lay).relative_to(src)
    if lay is CITYSCAPES and any(_label_for(src, p, LABEL_IDS_SUFFIX).is_file() for p in missing):
        return DataError(
            f"{src}: {len(missing)} of {len(images)} train images have only "
            f"*{LABEL_IDS_SUFFIX} and no *{LABEL_SUFFIX} (e.g. {first}); convert them with "
            f"cityscapesscripts' createTrainIdLabelImgs (CITYSCAPES_DATASET={src} "
            f"csCreateTrainIdLabelImgs) or mmseg's tools/dataset_converters/cityscapes.py "
            f"{src}")
    return DataError(f"{src}: {len(missing)} of {len(images)} train images have no "
                     f"label (e.g. missing {first})")


def _replace_with_link(src: Path, dest: Path) -> str | None:
    """Point ``dest`` at ``src`` (replacing a symlink or a synthetic set, nothing else)."""
    try:
        dest_res = dest.resolve()
    except OSError:
        dest_res = dest.absolute()
    if dest_res == src and not dest.is_symlink():
        raise DataError(f"{dest}: is the dataset root itself; refusing to replace it")
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
            raise DataError(f"{dest}: contains the dataset root {src}; refusing to replace it")
        replaced = "synthetic"
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-link{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(src, tmp, target_is_directory=True)
    os.replace(tmp, dest)
    return replaced


def link_real(dataset_root: Path, dest: Path) -> dict:
    """Validate a real Cityscapes or ADE20K tree (its train split with labels) and symlink dest
    to it."""
    t0 = time.perf_counter()
    src = Path(dataset_root).expanduser()
    if not src.is_dir():
        raise DataError(f"{src}: dataset root does not exist or is not a directory")
    src = src.resolve()
    lay = _layout_of(src, "leftImg8bit/train/<city>/*_leftImg8bit.png or images/training/*.jpg")
    images, missing = _pairs(src, ("*/*" if lay.by_city else "*") + lay.img_suffix, lay)
    if not images:
        raise DataError(f"{src}: no {lay.img_dir.as_posix()}/{'<city>/' if lay.by_city else ''}"
                        f"*{lay.img_suffix} images")
    if missing:
        raise _missing_labels(src, lay, images, missing)
    replaced = _replace_with_link(src, Path(dest))
    cities = sorted({p.parent.name for p in images}) if lay.by_city else []
    return {"dest": str(dest), "target": str(src), "layout": lay.name, "images": len(images),
            "labels": len(images), "cities": len(cities), "replaced": replaced,
            "seconds": time.perf_counter() - t0}


def _image_problem(path: Path, label: bool, lay: Layout = CITYSCAPES) -> str | None:
    """Why this image or label file is unusable, or None."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if path.suffix == ".png":
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            return "not a PNG file"
        if not data.rstrip(b"\0").endswith(PNG_IEND):
            return f"truncated PNG ({len(data)} bytes, no IEND chunk)"
    arr = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_UNCHANGED if label else cv2.IMREAD_COLOR)
    if arr is None:
        return f"corrupt {path.suffix[1:].upper()} (cv2 cannot decode it)"
    if label:
        if arr.ndim != 2:
            return f"label map has {arr.shape[2]} channels, expected 1"
        if arr.dtype != np.uint8:
            return f"label map is {arr.dtype}, expected uint8"
        allowed = np.r_[np.arange(lay.max_label + 1), [] if lay.ignore_value is None else [lay.ignore_value]]
        bad = np.setdiff1d(np.unique(arr), allowed)
        if bad.size:
            ignore = "" if lay.ignore_value is None else f" and {lay.ignore_value}"
            return f"label values {bad[:5].tolist()} outside 0..{lay.max_label}{ignore} (not {lay.labels}?)"
    return None


def _check_deep(root: Path, lay: Layout, images: list[Path]) -> None:
    for img in images:
        label = _label_for(root, img, layout=lay)
        for path, is_label in ((img, False), (label, True)):
            why = _image_problem(path, is_label, lay)
            if why:
                raise DataError(f"{path}: {why}")
        a = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        if a is None or b is None or a.shape[:2] != b.shape[:2]:
            raise DataError(f"{img}: image and label sizes differ "
                            f"({None if a is None else a.shape[:2]} vs "
                            f"{None if b is None else b.shape[:2]})")


def check(root: Path, deep: bool = False) -> dict:
    """Validate a data root for training; raise DataError naming the path and the problem."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data root does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a directory")
    lay = detect_layout(root)
    if lay is None:
        raise DataError(f"{root}: missing {IMG_DIR.as_posix()} directory "
                        f"(expected Cityscapes layout, or ADE20K's {ADE20K.img_dir.as_posix()})")
    # Recursive, like mmseg's BaseSegDataset.load_data_list.
    images, missing = _pairs(root, "**/*" + lay.img_suffix, lay)
    if not images:
        raise DataError(f"{root}: no *{lay.img_suffix} images under {lay.img_dir.as_posix()}")
    if missing:
        raise DataError(f"{root}: {len(missing)} of {len(images)} images have no label, e.g. "
                        f"{missing[0]} (expected {_label_for(root, missing[0], layout=lay)})")
    labels = sorted((root / lay.label_dir).glob("**/*" + lay.label_suffix))
    if deep:
        _check_deep(root, lay, images)
    marker = _read_marker(root)
    return {"root": str(root), "layout": lay.name, "images": len(images), "labels": len(labels),
            "cities": len({p.parent.name for p in images}) if lay.by_city else 0,
            "deep": bool(deep), "synthetic": marker is not None,
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
                description="Synthetic / real Cityscapes and ADE20K data for segbench.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="write a synthetic training set in a dataset's layout")
    g.add_argument("root", type=Path)
    g.add_argument("--layout", choices=list(LAYOUTS), default="cityscapes")
    g.add_argument("--n", type=int, default=30, help="number of images (default 30)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--size", type=_parse_size, default=None,
                   help="HxW (default 1024x2048 for cityscapes, 512x683 for ade20k)")
    ln = sub.add_parser("link", help="validate a real Cityscapes or ADE20K tree and symlink DEST to it")
    ln.add_argument("dataset_root", type=Path)
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
            size = args.size or DEFAULT_SIZE[args.layout]
            r = generate(args.root, n_images=args.n, seed=args.seed, size=size, layout=args.layout)
            h, w = r["size"]
            verb = "reused" if r["reused"] else "generated"
            print(f"data: {verb} {r['n_images']} synthetic {TITLE[args.layout]} images ({w}x{h} px, "
                  f"seed {r['seed']}) in {args.root} in {r['seconds']:.1f} s")
        elif args.cmd == "link":
            r = link_real(args.dataset_root, args.dest)
            extra = f", replaced a {r['replaced']}" if r["replaced"] else ""
            where = f" in {r['cities']} cities" if r["layout"] == "cityscapes" else ""
            print(f"data: linked {r['dest']} -> {r['target']} ({r['images']} {TITLE[r['layout']]} "
                  f"train images with {LAYOUTS[r['layout']].labels}{where}{extra}) "
                  f"in {r['seconds']:.1f} s")
        else:
            r = check(args.root, deep=args.deep)
            kind = "synthetic" if r["synthetic"] else "real"
            how = ", all decoded" if r["deep"] else ""
            where = f" in {r['cities']} cities" if r["layout"] == "cityscapes" else ""
            print(f"data: ok: {args.root} has {r['images']} {TITLE[r['layout']]} train images with "
                  f"labels{where} ({kind}{how}) in {r['seconds']:.1f} s")
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
