"""Tests for segbench.data: synthetic Cityscapes generation, link_real, check, CLI."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # no packaging/conftest yet: make `pytest` work from the checkout
    sys.path.insert(0, str(REPO))

from segbench import data  # noqa: E402
from segbench.data import DataError, check, generate, link_real  # noqa: E402
SMALL = dict(n_images=4, seed=0, size=(128, 256))
NAME_RE = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_000019_leftImg8bit\.png$")
PAL_BGR = np.array(data.PALETTE, np.float32)[:, ::-1]

# Without segbench's stand-in <site-packages>/mmcv/_ext.py, plain mmcv-lite cannot import
# mmseg.datasets at all; this is the chain (mmseg 1.2.2, mmcv-lite 2.1.0).
MMCV_EXT_CHAIN = (
    "mmseg.datasets needs mmcv._ext (mmcv-lite lacks it; segbench's PrepareEnv.sh installs a "
    "stand-in): mmseg/datasets/__init__.py:29 -> mmseg/datasets/transforms/__init__.py:3 -> "
    "transforms/loading.py:13 (from mmseg.utils import datafrombytes) -> "
    "mmseg/utils/__init__.py:24 -> mmseg/utils/mask_classification.py:5 "
    "(from mmcv.ops import point_sample) -> mmcv/ops/__init__.py:3 -> "
    "mmcv/ops/active_rotated_filter.py:10 load_ext('_ext') -> "
    "ModuleNotFoundError: No module named 'mmcv._ext'"
)


# ----------------------------------------------------------------------------- helpers


def _images(root: Path) -> list[Path]:
    return sorted((root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))


def _label_of(root: Path, img: Path) -> Path:
    stem = img.name[: -len("_leftImg8bit.png")]
    return root / "gtFine" / "train" / img.parent.name / f"{stem}_gtFine_labelTrainIds.png"


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*.png"))}


def _pairs(root: Path):
    for img in _images(root):
        yield (img, cv2.imread(str(img), cv2.IMREAD_UNCHANGED),
               cv2.imread(str(_label_of(root, img)), cv2.IMREAD_UNCHANGED))


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "segbench.data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _copy_tree_without_marker(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(data.MARKER_NAME))
    return dst


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small") / "cityscapes"
    r = generate(root, **SMALL)
    assert r["reused"] is False
    return root


# ----------------------------------------------------------------------------- generate


def test_layout_and_file_names(small):
    imgs = _images(small)
    assert len(imgs) == 4
    cities = set()
    for img in imgs:
        m = NAME_RE.match(img.name)
        assert m, img.name
        assert m["city"] == img.parent.name
        cities.add(m["city"])
        assert _label_of(small, img).is_file()
    # spread over the cities, only the default ones
    assert cities == {"aachen", "bochum", "bremen"}
    # nothing but images, labels and the marker
    files = sorted(p.relative_to(small).as_posix() for p in small.rglob("*") if p.is_file())
    assert len(files) == 9 and data.MARKER_NAME in files
    labels = sorted((small / "gtFine" / "train").glob("*/*_gtFine_labelTrainIds.png"))
    assert len(labels) == 4
    for _, img, lab in _pairs(small):
        assert img.shape == (128, 256, 3) and img.dtype == np.uint8
        assert lab.shape == (128, 256) and lab.dtype == np.uint8
    marker = json.loads((small / data.MARKER_NAME).read_text())
    assert marker["complete"] is True and marker["files"] == 8
    assert marker["params"]["n_images"] == 4 and marker["params"]["size"] == [128, 256]
    assert marker["digest"].startswith("sha256:")


def test_default_size_two_images(tmp_path):
    r = generate(tmp_path / "d", n_images=2)
    assert r["size"] == [1024, 2048] and r["reused"] is False
    pairs = list(_pairs(tmp_path / "d"))
    assert len(pairs) == 2
    for _, img, lab in pairs:
        assert img.shape == (1024, 2048, 3) and lab.shape == (1024, 2048)
        assert len(set(np.unique(lab).tolist()) - {255}) >= 8


def test_same_seed_identical_bytes_other_seed_differs(small, tmp_path):
    again = generate(tmp_path / "again", **SMALL)
    a, b = _all_files(small), _all_files(tmp_path / "again")
    assert a.keys() == b.keys() and len(a) == 8
    assert all(a[k] == b[k] for k in a)
    assert again["digest"] == json.loads((small / data.MARKER_NAME).read_text())["digest"]

    other = generate(tmp_path / "other", **{**SMALL, "seed": 1})
    c = _all_files(tmp_path / "other")
    assert c.keys() == a.keys()
    assert all(a[k] != c[k] for k in a), "every file must change with the seed"
    assert other["digest"] != again["digest"]


def test_labels_valid_and_several_classes(small):
    allowed = set(range(19)) | {255}
    seen: set[int] = set()
    ignore_somewhere = False
    for path, _, lab in _pairs(small):
        values = set(np.unique(lab).tolist())
        assert values <= allowed, (path, values - allowed)
        classes = values - {255}
        assert len(classes) >= 6, (path, classes)
        assert {0, 1, 2, 10} <= classes, (path, classes)  # road, sidewalk, building, sky
        # road is at the bottom, sky at the top
        assert (lab[-1] == 0).mean() > 0.2 and (lab[0] == 10).mean() > 0.2
        seen |= classes
        ignore_somewhere |= 255 in values
        assert (lab == 255).mean() < 0.05  # thin borders, not blobs
    assert len(seen) >= 12, seen
    assert ignore_somewhere


def test_image_label_alignment(small):
    for path, img, lab in _pairs(small):
        imgf = img.astype(np.float32)
        # mean colour of a class's pixels is nearest to that class's palette colour
        for cls in (0, 1, 2, 8, 10):  # road, sidewalk, building, vegetation, sky
            m = lab == cls
            if m.sum() < 50:
                continue
            mean = imgf[m].mean(0)
            d = np.linalg.norm(PAL_BGR - mean, axis=1)
            assert d.argmin() == cls, (path.name, data.CLASSES[cls], mean, d.argmin())
            assert d[cls] < 60, (path.name, data.CLASSES[cls], mean)
        # per pixel, the nearest palette colour is the label far more often than chance
        valid = lab != 255
        nearest = ((imgf[:, :, None, :] - PAL_BGR) ** 2).sum(-1).argmin(-1)
        acc = (nearest[valid] == lab[valid]).mean()
        majority = np.bincount(lab[valid]).max() / valid.sum()
        assert acc > 0.8 and acc > majority + 0.3, (path.name, acc, majority)
        # ...but it is not a flat palette image: there is noise/texture within a class
        assert imgf[lab == 0].std(0).min() > 3


def test_palette_matches_mmseg_metainfo():
    spec = importlib.util.find_spec("mmseg")  # locates the package without importing it
    src = Path(spec.submodule_search_locations[0]) / "datasets" / "cityscapes.py"
    tree = ast.parse(src.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef)
               and n.name == "CityscapesDataset")
    meta = next(n.value for n in cls.body if isinstance(n, ast.Assign)
                and n.targets[0].id == "METAINFO")
    kw = {k.arg: ast.literal_eval(k.value) for k in meta.keywords}
    assert tuple(kw["classes"]) == data.CLASSES
    assert [tuple(c) for c in kw["palette"]] == list(data.PALETTE)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    defaults = dict(zip([a.arg for a in init.args.args[-len(init.args.defaults):]],
                        [ast.literal_eval(d) for d in init.args.defaults]))
    assert defaults == {"img_suffix": data.IMG_SUFFIX, "seg_map_suffix": data.LABEL_SUFFIX}


def test_mmseg_style_discovery_and_loading(small):
    """What BaseSegDataset.load_data_list + LoadImageFromFile/LoadAnnotations do, via the
    mmengine/mmcv pieces that import without mmcv._ext."""
    from mmcv import imfrombytes
    from mmcv.transforms import LoadImageFromFile
    from mmengine import fileio

    img_dir, ann_dir = small / "leftImg8bit/train", small / "gtFine/train"
    found = sorted(fileio.list_dir_or_file(str(img_dir), list_dir=False,
                                           suffix="_leftImg8bit.png", recursive=True))
    assert len(found) == 4
    for rel in found:
        seg = ann_dir / (rel[: -len("_leftImg8bit.png")] + "_gtFine_labelTrainIds.png")
        res = LoadImageFromFile()(dict(img_path=str(img_dir / rel)))
        assert res["img"].shape == (128, 256, 3)
        gt = imfrombytes(fileio.get(str(seg)), flag="unchanged",
                         backend="pillow").squeeze().astype(np.uint8)
        assert gt.shape == (128, 256)
        assert set(np.unique(gt).tolist()) <= set(range(19)) | {255}


def test_mmseg_cityscapes_dataset(small):
    try:
        from mmseg.datasets import CityscapesDataset
    except ModuleNotFoundError as e:
        if e.name == "mmcv._ext":
            pytest.skip(MMCV_EXT_CHAIN)
        raise
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    ds = CityscapesDataset(
        data_root=str(small),
        data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
        pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
                  dict(type="PackSegInputs")])
    assert len(ds) == 4
    sample = ds[0]
    assert tuple(sample["inputs"].shape) == (3, 128, 256)
    seg = sample["data_samples"].gt_sem_seg.data
    assert tuple(seg.shape) == (1, 128, 256)
    assert set(seg.unique().tolist()) <= set(range(19)) | {255}
    assert len(set(seg.unique().tolist()) - {255}) >= 6


def test_idempotent_reuse_and_regeneration(tmp_path):
    root = tmp_path / "r"
    first = generate(root, **SMALL)
    assert first["reused"] is False
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    second = generate(root, **SMALL)
    assert second["reused"] is True and second["digest"] == first["digest"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes

    # a missing file forces regeneration and brings it back, byte-identical
    victim = _images(root)[1]
    before = victim.read_bytes()
    victim.unlink()
    third = generate(root, **SMALL)
    assert third["reused"] is False and victim.read_bytes() == before

    # different parameters regenerate; fewer images leave no stale files behind
    fourth = generate(root, **{**SMALL, "n_images": 2, "seed": 5})
    assert fourth["reused"] is False and fourth["digest"] != first["digest"]
    assert len(_images(root)) == 2
    assert len(list((root / "gtFine").rglob("*.png"))) == 2
    assert check(root)["images"] == 2
    assert json.loads((root / data.MARKER_NAME).read_text())["params"]["seed"] == 5
    assert generate(root, **{**SMALL, "n_images": 2, "seed": 5})["reused"] is True


def test_incomplete_marker_is_not_reused(tmp_path):
    root = tmp_path / "r"
    generate(root, **SMALL)
    marker = json.loads((root / data.MARKER_NAME).read_text())
    marker["complete"] = False
    (root / data.MARKER_NAME).write_text(json.dumps(marker))
    assert generate(root, **SMALL)["reused"] is False
    assert json.loads((root / data.MARKER_NAME).read_text())["complete"] is True


def test_generate_refuses_foreign_tree_and_bad_args(small, tmp_path):
    foreign = _copy_tree_without_marker(small, tmp_path / "foreign")
    before = _all_files(foreign)
    with pytest.raises(DataError, match="not a segbench synthetic set"):
        generate(foreign, **{**SMALL, "seed": 3})
    assert _all_files(foreign) == before
    with pytest.raises(DataError, match="too small"):
        generate(tmp_path / "x", n_images=1, size=(8, 8))
    with pytest.raises(DataError, match="n_images"):
        generate(tmp_path / "x", n_images=0, size=(64, 64))
    with pytest.raises(DataError, match="city"):
        generate(tmp_path / "x", n_images=1, size=(64, 64), cities=("bad_city",))


# ----------------------------------------------------------------------------- check


def test_check_ok(small):
    r = check(small)
    assert (r["images"], r["labels"], r["cities"], r["synthetic"]) == (4, 4, 3, True)
    assert check(small, deep=True)["deep"] is True


def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert str(n) in msg, (n, msg)
    assert isinstance(excinfo.value, ValueError)


def test_check_errors(small, tmp_path):
    with pytest.raises(DataError) as e:
        check(tmp_path / "nope")
    _one_line_error(e, tmp_path / "nope", "does not exist")

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        check(tmp_path / "empty")
    _one_line_error(e, tmp_path / "empty", "leftImg8bit/train")

    (tmp_path / "noimg" / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        check(tmp_path / "noimg")
    _one_line_error(e, tmp_path / "noimg", "no *_leftImg8bit.png images")

    root = _copy_tree_without_marker(small, tmp_path / "nolabel")
    img = _images(root)[2]
    _label_of(root, img).unlink()
    with pytest.raises(DataError) as e:
        check(root)
    _one_line_error(e, "1 of 4 images have no label", img)


@pytest.mark.parametrize("which", ["image", "label"])
def test_check_deep_finds_truncated_png(small, tmp_path, which):
    root = _copy_tree_without_marker(small, tmp_path / "trunc")
    img = _images(root)[3]
    victim = img if which == "image" else _label_of(root, img)
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    assert check(root)["images"] == 4  # shallow check only looks at names
    with pytest.raises(DataError) as e:
        check(root, deep=True)
    _one_line_error(e, victim, "truncated")


def test_check_deep_rejects_non_trainid_labels(small, tmp_path):
    root = _copy_tree_without_marker(small, tmp_path / "ids")
    lab_path = _label_of(root, _images(root)[0])
    lab = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
    lab[0, 0] = 33  # a labelIds value, not a train id
    cv2.imwrite(str(lab_path), lab)
    check(root)
    with pytest.raises(DataError) as e:
        check(root, deep=True)
    _one_line_error(e, lab_path, "outside 0..18")


# ----------------------------------------------------------------------------- link_real


def test_link_real_creates_and_replaces_symlinks(small, tmp_path):
    real = _copy_tree_without_marker(small, tmp_path / "real")
    dest = tmp_path / "data" / "cityscapes"
    r = link_real(real, dest)
    assert dest.is_symlink() and dest.resolve() == real.resolve()
    assert Path(os.readlink(dest)).is_absolute()
    assert (r["images"], r["labels"], r["cities"], r["replaced"]) == (4, 4, 3, None)
    assert check(dest)["images"] == 4

    real2 = _copy_tree_without_marker(small, tmp_path / "real2")
    r = link_real(real2, dest)
    assert r["replaced"] == "symlink" and dest.resolve() == real2.resolve()
    assert real.is_dir() and len(_images(real)) == 4  # old target untouched


def test_link_real_replaces_synthetic_but_not_real_dirs(small, tmp_path):
    real = _copy_tree_without_marker(small, tmp_path / "real")

    synth = tmp_path / "synth"
    generate(synth, **{**SMALL, "n_images": 1})
    r = link_real(real, synth)
    assert r["replaced"] == "synthetic" and synth.is_symlink()
    assert synth.resolve() == real.resolve()

    other = _copy_tree_without_marker(small, tmp_path / "other")  # a real dir, no marker
    with pytest.raises(DataError, match="refusing to replace"):
        link_real(real, other)
    assert not other.is_symlink() and len(_images(other)) == 4


def test_link_real_labelids_only_tree(small, tmp_path):
    real = _copy_tree_without_marker(small, tmp_path / "real")
    for p in (real / "gtFine").rglob("*_gtFine_labelTrainIds.png"):
        p.rename(p.with_name(p.name.replace("_labelTrainIds", "_labelIds")))
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as e:
        link_real(real, dest)
    _one_line_error(e, "cityscapesscripts", "createTrainIdLabelImgs",
                    "tools/dataset_converters/cityscapes.py",
                    "labelIds")
    assert not dest.exists() and not dest.is_symlink()


def test_link_real_rejects_bad_trees(small, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        link_real(tmp_path / "nope", tmp_path / "dest")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="leftImg8bit/train"):
        link_real(tmp_path / "empty", tmp_path / "dest")
    real = _copy_tree_without_marker(small, tmp_path / "real")
    _label_of(real, _images(real)[0]).unlink()
    with pytest.raises(DataError, match="1 of 4 train images have no label"):
        link_real(real, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_generate_check_link(tmp_path):
    root = tmp_path / "cs"
    p = _run_cli("generate", str(root), "--n", "2", "--seed", "1", "--size", "64x128")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and "generated 2 synthetic" in lines[0] and str(root) in lines[0]
    assert re.search(r"in \d+\.\d s$", lines[0]), lines[0]
    assert cv2.imread(str(_images(root)[0])).shape == (64, 128, 3)

    p = _run_cli("generate", str(root), "--n", "2", "--seed", "1", "--size", "64x128")
    assert p.returncode == 0 and "reused 2 synthetic" in p.stdout

    p = _run_cli("check", str(root), "--deep")
    assert p.returncode == 0 and "2 Cityscapes train images" in p.stdout, p.stderr

    real = _copy_tree_without_marker(root, tmp_path / "real")
    p = _run_cli("link", str(real), str(tmp_path / "linked"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "linked").is_symlink() and "linked" in p.stdout


def test_cli_errors_are_one_line_exit_1(small, tmp_path):
    root = _copy_tree_without_marker(small, tmp_path / "t")
    victim = _images(root)[0]
    victim.write_bytes(victim.read_bytes()[:1000])
    cases = [
        (["check", str(tmp_path / "missing")], "does not exist"),
        (["check", str(root), "--deep"], victim.name),
        (["generate", str(tmp_path / "g"), "--size", "big"], "HxW"),
        (["link", str(tmp_path / "missing"), str(tmp_path / "d")], "does not exist"),
        ([], "required"),
    ]
    for args, needle in cases:
        p = _run_cli(*args)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        err = p.stderr.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, p.stderr)
        assert "Traceback" not in p.stderr and p.stdout == ""


def test_main_in_process(tmp_path, capsys):
    assert data.main(["generate", str(tmp_path / "m"), "--n", "1", "--size", "64x64"]) == 0
    assert "generated 1 synthetic" in capsys.readouterr().out
    assert data.main(["check", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_ade20k_layout_read_by_mmsegs_own_dataset_class(tmp_path):
    """The ADE20K-layout set: mmseg's ADE20KDataset (reduce_zero_label) finds every image and its
    annotation, and the labels it loads are the scene's train ids (0 = other becomes 255)."""
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations
    from mmcv.transforms import LoadImageFromFile

    root = tmp_path / "ade"
    r = generate(root, n_images=3, seed=2, size=(64, 96), layout="ade20k")
    assert r["layout"] == "ade20k" and r["files"] == 6
    assert sorted(p.name for p in (root / "images/training").iterdir()) == [
        "ADE_train_00000001.jpg", "ADE_train_00000002.jpg", "ADE_train_00000003.jpg"]
    ds = ADE20KDataset(data_root=str(root), data_prefix=dict(img_path="images/training",
                                                            seg_map_path="annotations/training"),
                       pipeline=[], lazy_init=False)
    assert len(ds) == 3 and ds.metainfo["classes"][0] == "wall" and len(ds.metainfo["classes"]) == 150
    _, scene_label = data.draw(2, 0, (64, 96))
    item = LoadAnnotations(reduce_zero_label=True)(LoadImageFromFile()(ds[0]))
    assert item["img"].shape == (64, 96, 3)
    assert np.array_equal(item["gt_seg_map"], scene_label)   # k stored as k + 1, other -> 255
    assert check(root, deep=True)["layout"] == "ade20k"
    assert generate(root, n_images=3, seed=2, size=(64, 96), layout="ade20k")["reused"]


def test_ade20k_check_link_and_bad_labels(tmp_path):
    root = tmp_path / "ade"
    generate(root, n_images=2, seed=0, size=(48, 64), layout="ade20k")
    real = tmp_path / "ADEChallengeData2016"
    shutil.copytree(root, real, ignore=shutil.ignore_patterns(data.MARKER_NAME))
    r = link_real(real, tmp_path / "linked")
    assert r["layout"] == "ade20k" and r["images"] == 2 and (tmp_path / "linked").is_symlink()
    label = real / "annotations/training/ADE_train_00000001.png"
    cv2.imwrite(str(label), np.full((48, 64), 200, np.uint8))
    with pytest.raises(DataError, match=r"label values \[200\] outside 0..150"):
        check(real, deep=True)
    label.unlink()
    with pytest.raises(DataError, match="1 of 2 train images have no label"):
        link_real(real, tmp_path / "linked2")
    with pytest.raises(DataError, match="layout must be one of cityscapes, ade20k"):
        generate(tmp_path / "x", n_images=1, size=(48, 64), layout="voc")
