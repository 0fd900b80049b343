"""Object cutout sources, the cutout folder and its disjointness check, on files the tests write themselves."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.cli import main as cli_main
from densehybrid_ros.data.real_objects import (
    MANIFEST, CutoutNegatives, ObjectSourceError, check_disjoint, extract_objects, read_ade20k, read_davis,
    read_masks, read_npz_instances, read_on_black, read_oxford_pets, read_packaged, read_rgba, read_voc, read_world,
    voc_colormap,
)


def photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def disc(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_gray(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), a)


def write_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha]))


# --- readers ----------------------------------------------------------------------------------------------------

def test_rgba_reader_crops_to_alpha_and_keeps_soft_edges(tmp_path):
    rgb = photo(40, 50, 1)
    alpha = np.zeros((40, 50), np.uint8)
    alpha[10:20, 5:30] = 255
    alpha[20, 5:30] = 100                                      # a soft edge row
    write_rgba(tmp_path / "a" / "one.png", rgb, alpha)
    write_rgba(tmp_path / "empty.png", rgb, np.zeros((40, 50), np.uint8))  # nothing to cut: skipped
    out = list(read_rgba(tmp_path))
    assert [o.name for o in out] == ["a__one"] and out[0].origin == "a/one.png"
    o = out[0]
    assert o.alpha.shape == (15, 29)                           # rows 8..22, cols 3..31 with the 2-pixel margin
    assert np.array_equal(o.rgb, rgb[8:23, 3:32]) and np.array_equal(o.alpha, alpha[8:23, 3:32])
    write_rgb(tmp_path / "flat.png", rgb)
    with pytest.raises(ObjectSourceError, match=r"flat\.png has no alpha channel"):
        list(read_rgba(tmp_path))


def test_masks_reader_binary_and_instance_ids(tmp_path):
    write_rgb(tmp_path / "images/cat.jpg", photo(30, 40, 2))
    write_gray(tmp_path / "masks/cat.png", np.where(disc(30, 40, 15, 20, 8), 255, 0).astype(np.uint8))
    ids = np.zeros((30, 40), np.uint8)
    ids[2:10, 2:10], ids[15:25, 20:35], ids[0, :] = 1, 2, 255  # two instances and a void line
    write_rgb(tmp_path / "images/pair.png", photo(30, 40, 3))
    write_gray(tmp_path / "masks/pair.png", ids)
    out = {o.name: o for o in read_masks(tmp_path)}
    assert sorted(out) == ["cat", "pair_1", "pair_2"]
    assert (out["cat"].alpha == 255).sum() == disc(30, 40, 15, 20, 8).sum()
    assert (out["pair_2"].alpha == 255).sum() == 10 * 15 and out["pair_2"].origin == "images/pair.png"
    write_gray(tmp_path / "masks/orphan.png", ids)
    with pytest.raises(ObjectSourceError, match=r"mask .*orphan\.png has no image"):
        list(read_masks(tmp_path))


def test_oxford_pets_trimap_boundary_is_half_alpha(tmp_path):
    trimap = np.full((20, 24), 2, np.uint8)
    trimap[5:15, 6:18] = 3
    trimap[7:13, 8:16] = 1
    write_rgb(tmp_path / "images/Abyssinian_1.jpg", photo(20, 24, 4))
    write_gray(tmp_path / "annotations/trimaps/Abyssinian_1.png", trimap)
    write_gray(tmp_path / "annotations/trimaps/._Abyssinian_1.png", trimap)  # archive junk: ignored
    [o] = list(read_oxford_pets(tmp_path))
    assert o.name == "Abyssinian_1"
    assert (o.alpha == 255).sum() == 6 * 8 and (o.alpha == 128).sum() == 10 * 12 - 6 * 8
    bad = trimap.copy()
    bad[0, 0] = 7
    write_gray(tmp_path / "annotations/trimaps/Abyssinian_1.png", bad)
    with pytest.raises(ObjectSourceError, match=r"values \[7\]"):
        list(read_oxford_pets(tmp_path))


def test_voc_reader_decodes_palette_colours_and_skips_road_inliers(tmp_path):
    cmap = voc_colormap()
    h, w = 30, 40
    objects = np.zeros((h, w), np.uint8)
    classes = np.zeros((h, w), np.uint8)
    objects[3:12, 3:15], classes[3:12, 3:15] = 1, 12          # instance 1: dog
    objects[15:28, 20:38], classes[15:28, 20:38] = 2, 15      # instance 2: person (a road-scene inlier)
    objects[12, 3:15] = classes[12, 3:15] = 255               # boundary band
    root = tmp_path / "VOCdevkit"
    write_rgb(root / "VOC2012/JPEGImages/2007_000033.jpg", photo(h, w, 5))
    # OpenCV reads VOC's palette PNGs as colour; the fixture stores those colours directly.
    write_rgb(root / "VOC2012/SegmentationObject/2007_000033.png", cmap[objects])
    write_rgb(root / "VOC2012/SegmentationClass/2007_000033.png", cmap[classes])
    out = list(read_voc(root))
    assert [o.name for o in out] == ["2007_000033_1_dog"]
    assert (out[0].alpha == 255).sum() == 9 * 12                # the 255 band is not part of the object
    write_rgb(root / "VOC2012/SegmentationObject/2007_000033.png", np.full((h, w, 3), (1, 2, 3), np.uint8))
    with pytest.raises(ObjectSourceError, match="not a VOC palette colour"):
        list(read_voc(root))


def make_davis(root: Path) -> Path:
    """camel: 4 frames, the disc touches the bottom edge in frame 2; bmx-trees: a ridden bicycle (road inlier)."""
    for seq, seed in (("camel", 10), ("bmx-trees", 20)):
        for k in range(4):
            write_rgb(root / f"JPEGImages/480p/{seq}/{k:05d}.png", photo(36, 48, seed + k))
            cy = 33 if k == 2 else 14
            write_gray(root / f"Annotations/480p/{seq}/{k:05d}.png",
                       np.where(disc(36, 48, cy, 20 + k, 6), 255, 0).astype(np.uint8))
    return root


def test_davis_reader_skips_inlier_sequences_cut_objects_and_steps_frames(tmp_path):
    root = make_davis(tmp_path / "DAVIS")
    out = list(read_davis(root))
    assert [o.name for o in out] == ["camel_00000", "camel_00001", "camel_00003"]  # 00002 is cut by the edge
    o = out[1]
    assert o.origin == "JPEGImages/480p/camel/00001.png"
    frame = photo(36, 48, 11)
    assert o.alpha.shape == (17, 17) and np.array_equal(o.rgb, frame[6:23, 13:30])  # disc box + 2 px margin
    assert (o.alpha == 255).sum() == disc(36, 48, 14, 21, 6).sum()
    assert [o.name for o in read_davis(root, frame_step=2)] == ["camel_00000"]
    assert [o.name for o in read_davis(root, frame_step=2, allow_truncated=True)] == ["camel_00000", "camel_00002"]
    assert [o.name for o in read_davis(root, sequences=["bmx-trees"], frame_step=3)] == ["bmx-trees_00000",
                                                                                          "bmx-trees_00003"]
    with pytest.raises(ObjectSourceError, match=r"no sequence\(s\) \['bear'\]"):
        list(read_davis(root, sequences=["bear"]))
    split = np.where(disc(36, 48, 14, 21, 6), 255, 0).astype(np.uint8)
    split[:, 20:23] = 0                                   # a post in front cuts the camel in two halves
    write_gray(root / "Annotations/480p/camel/00001.png", split)
    assert [o.name for o in read_davis(root)] == ["camel_00000", "camel_00003"]
    assert "camel_00001" in [o.name for o in read_davis(root, min_largest_part=0.4)]


def test_davis_reader_instance_ids_and_unknown_sequences(tmp_path):
    root = tmp_path / "DAVIS"
    ids = np.zeros((30, 40), np.uint8)
    ids[3:10, 3:12], ids[15:25, 20:30] = 1, 2
    write_rgb(root / "JPEGImages/480p/gold-fish/00000.png", photo(30, 40, 30))
    write_gray(root / "Annotations/480p/gold-fish/00000.png", ids)
    with pytest.raises(ObjectSourceError, match="not DAVIS 2016 ones.*name the sequences"):
        list(read_davis(root))                       # a DAVIS 2017 sequence: its object class is unknown here
    out = {o.name: o for o in read_davis(root, sequences=["gold-fish"])}
    assert sorted(out) == ["gold-fish_00000_1", "gold-fish_00000_2"]
    assert (out["gold-fish_00000_2"].alpha == 255).sum() == 10 * 10
    (root / "JPEGImages/480p/gold-fish/00000.png").unlink()
    with pytest.raises(ObjectSourceError, match="has no frame"):
        list(read_davis(root, sequences=["gold-fish"]))


def ade_seg(classes: np.ndarray) -> np.ndarray:
    """The full-ADE20K seg image as OpenCV writes it (BGR): class = R / 10 * 256 + G."""
    seg = np.zeros(classes.shape + (3,), np.uint8)
    seg[..., 2] = classes // 256 * 10
    seg[..., 1] = classes % 256
    return seg


def test_ade20k_reader_keeps_whole_visible_objects_of_non_road_classes(tmp_path):
    folder = tmp_path / "ADE20K_2021_17_01/images/ADE/training/urban/street"
    stem, h, w = "ADE_train_00000001", 40, 60
    write_rgb(folder / f"{stem}.jpg", photo(h, w, 40))
    ashcan = disc(h, w, 20, 15, 8)                  # amodal: the box in front hides its right part
    box = np.zeros((h, w), bool)
    box[10:30, 18:40] = True
    car = np.zeros((h, w), bool)
    car[32:39, 40:58] = True
    classes = np.zeros((h, w), np.int32)
    classes[ashcan], classes[box], classes[car] = 64, 1234, 401
    assert cv2.imwrite(str(folder / f"{stem}_seg.png"), ade_seg(classes))
    objects = []
    for i, (name, mask, extra) in enumerate([
            ("ashcan, trash can", ashcan, {}), ("box", box, {}), ("car, auto", car, {}),
            ("handle", box, {"parts": {"part_level": 1}}), ("container", car, {"crop": "1"}),
            ("bench", car, {"occluded": "yes"})]):
        write_gray(folder / stem / f"instance_{i:03d}_{stem}.png", np.where(mask, 255, 0).astype(np.uint8))
        ndx = {"ashcan, trash can": 64, "box": 1234, "car, auto": 401}.get(name, 7)
        objects.append({"id": i, "name": name, "name_ndx": ndx, "crop": "0", "occluded": "no",
                        "parts": {"part_level": 0}, "instance_mask": f"{stem}/instance_{i:03d}_{stem}.png", **extra})
    (folder / f"{stem}.json").write_text(json.dumps({"annotation": {"object": objects}}))
    root = tmp_path / "ADE20K_2021_17_01"
    out = {o.name: o for o in read_ade20k(root)}
    assert sorted(out) == [f"{stem}_000_ashcan", f"{stem}_001_box"]  # car: road class; part, cut, occluded: no
    ashcan_alpha = out[f"{stem}_000_ashcan"].alpha
    assert (ashcan_alpha == 255).sum() == (ashcan & ~box).sum()       # only what the box does not hide
    assert out[f"{stem}_001_box"].origin == f"images/ADE/training/urban/street/{stem}.jpg"
    (folder / f"{stem}_seg.png").unlink()
    with pytest.raises(ObjectSourceError, match="needs .*_seg.png"):
        list(read_ade20k(root))


def test_npz_reader_reads_sample_sets_and_skips_road_inliers(tmp_path):
    h, w = 24, 32
    masks = np.zeros((3, h, w), np.int32)
    masks[0, 2:10, 2:8], masks[1, 12:20, 4:30], masks[2, 5:15, 15:25] = 1, 1, 1
    folder = tmp_path / "voc"
    folder.mkdir()
    np.savez(folder / "data.npz", rgb=photo(h, w, 50), masks=masks, labels=np.array([1, 2, 3]))
    (folder / "class_names.txt").write_text("background\nbottle\nperson\nchair\n")
    out = list(read_npz_instances(tmp_path))
    assert [o.name for o in out] == ["voc_00_bottle", "voc_02_chair"]   # the person is a road-scene inlier
    assert out[1].origin == "voc/data.npz#2" and (out[1].alpha == 255).sum() == 10 * 10
    assert np.array_equal(out[0].rgb, photo(h, w, 50)[0:12, 0:10])
    np.savez(folder / "data.npz", rgb=photo(h, w, 50), masks=masks, labels=np.array([1, 2, 9]))
    with pytest.raises(ObjectSourceError, match="label 9 has no name"):
        list(read_npz_instances(tmp_path))


def test_on_black_reader_keeps_dark_print_and_opens_real_holes(tmp_path):
    h, w = 120, 160
    img = np.zeros((h, w, 3), np.uint8)
    img[20:100, 20:140] = (200, 180, 60)                 # a package, 80 x 120
    img[30:40, 30:50] = (5, 5, 5)                        # dark print inside it: 200 px, 2 % -> object
    img[25:45, 100:138] = (10, 12, 8)                    # dark print to 2 px from the package's edge: 8 %
    img[45:95, 60:95] = 0                                # a hole through it: 1750 px, 18 % -> background
    img[5, 5] = (255, 255, 255)                          # a speck of dust on the black: not the object
    write_rgb(tmp_path / "item/top.png", img)
    scene = photo(h, w, 60)                              # a photograph of a scene: not a cutout, skipped
    write_rgb(tmp_path / "bin/top.png", scene)
    [o] = list(read_on_black(tmp_path))
    assert o.name == "item__top" and o.origin == "item/top.png"
    assert o.alpha.shape == (84, 124)                    # the package's box + 2 px margin: the speck is dropped
    alpha = np.zeros((h, w), np.uint8)
    alpha[18:102, 18:142] = o.alpha
    package = np.zeros((h, w), bool)
    package[20:100, 20:140] = True
    hole = np.zeros((h, w), bool)
    hole[45:95, 60:95] = True
    assert (alpha[package & ~hole] == 255).all()         # both dark prints are object
    assert (alpha[~package] == 0).all()
    assert (alpha[46:94, 61:94] == 0).all()              # the hole is background (the closing rounds its corners)


def test_world_reader_cuts_evaluation_obstacles_from_renders():
    out = list(read_world(count=3, seed=1, height=384, width=768))
    assert len(out) == 3 and len({o.name for o in out}) == 3
    for o in out:
        assert o.rgb.shape[:2] == o.alpha.shape and (o.alpha == 255).sum() >= 64
        seed = int(o.origin.split("seed=")[1].rstrip(")"))
        assert seed >= 1 << 33                                  # never a training or split frame seed
    assert [o.name for o in read_world(count=3, seed=1, height=384, width=768)] == [o.name for o in out]


def test_packaged_reader_is_deterministic():
    a = list(read_packaged(count=2, seed=3))
    b = list(read_packaged(count=2, seed=3))
    assert len(a) == 2 and all(np.array_equal(x.rgb, y.rgb) and np.array_equal(x.alpha, y.alpha)
                               for x, y in zip(a, b))


# --- the cutout folder ------------------------------------------------------------------------------------------

def make_masks_source(root: Path, n: int = 3, seed: int = 0) -> Path:
    for i in range(n):
        write_rgb(root / f"images/o{i}.png", photo(40, 40, seed * 100 + i))
        write_gray(root / f"masks/o{i}.png", np.where(disc(40, 40, 20, 20, 6 + 4 * i), 255, 0).astype(np.uint8))
    return root


def test_extract_writes_rgba_files_and_manifest_and_reruns_cleanly(tmp_path):
    src = make_masks_source(tmp_path / "src")
    out = tmp_path / "objects"
    counts = extract_objects(read_masks(src), out, "mine", "masks", root=str(src), licence="CC0",
                             min_pixels=200)
    assert counts["written"] == 2 and counts["skipped_small"] == 1   # the r=6 disc has 113 px
    manifest = json.loads((out / MANIFEST).read_text())
    assert [o["file"] for o in manifest["objects"]] == ["mine/o1.png", "mine/o2.png"]
    assert manifest["sources"]["mine"] == {"reader": "masks", "root": str(src), "licence": "CC0"}
    data = cv2.imread(str(out / "mine/o2.png"), cv2.IMREAD_UNCHANGED)
    assert data.shape[2] == 4 and (data[..., 3] == 255).sum() == manifest["objects"][1]["pixels"]
    # A second source is added beside the first; re-running the first replaces its files (stale ones removed).
    extract_objects(read_masks(make_masks_source(tmp_path / "src2", seed=1)), out, "other", "masks", min_pixels=1)
    extract_objects(read_masks(src), out, "mine", "masks", min_pixels=400)
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(o["file"] for o in manifest["objects"] if o["source"] == "mine") == ["mine/o2.png"]
    assert not (out / "mine/o1.png").exists()
    assert len([o for o in manifest["objects"] if o["source"] == "other"]) == 3


def test_extract_skips_objects_much_wider_than_tall(tmp_path):
    write_rgb(tmp_path / "images/plank.png", photo(20, 80, 9))
    m = np.zeros((20, 80), np.uint8)
    m[8:12, 2:78] = 255
    write_gray(tmp_path / "masks/plank.png", m)
    counts = extract_objects(read_masks(tmp_path), tmp_path / "out", "p", "masks", min_pixels=10, max_aspect=3.0)
    assert counts["written"] == 0 and counts["skipped_wide"] == 1


def test_cutout_negatives_sample_returns_file_content(tmp_path):
    src = make_masks_source(tmp_path / "src")
    out = tmp_path / "objects"
    extract_objects(read_masks(src), out, "mine", "masks", min_pixels=1)
    bank = CutoutNegatives(out, verify=True)
    assert len(bank) == 3 and bank.sources == ["mine"]
    rgb, mask = bank.sample(np.random.default_rng(0))
    rgb2, mask2 = bank.sample(np.random.default_rng(0))
    assert np.array_equal(rgb, rgb2) and np.array_equal(mask, mask2)       # deterministic given the generator
    assert mask.dtype == bool and rgb.shape[:2] == mask.shape
    for s in range(12):  # each draw is one of the three discs with the photograph's pixels, maybe mirrored
        rgb, mask = bank.sample(np.random.default_rng(s))
        i = [int(disc(40, 40, 20, 20, 6 + 4 * k).sum()) for k in range(3)].index(int(mask.sum()))
        r = 6 + 4 * i
        original = photo(40, 40, i)[20 - r:20 + r + 1, 20 - r:20 + r + 1]
        assert np.array_equal(rgb[mask], original[mask]) or np.array_equal(rgb[mask], original[:, ::-1][mask])
    assert len({int(bank.sample(np.random.default_rng(s))[1].sum()) for s in range(20)}) > 1
    with pytest.raises(TypeError):
        bank.sample(1)
    (out / "mine/o0.png").write_bytes(b"garbage")
    with pytest.raises(ObjectSourceError, match="differs from its manifest"):
        CutoutNegatives(out, verify=True)
    with pytest.raises(ObjectSourceError, match="no manifest.json"):
        CutoutNegatives(tmp_path)


def test_check_disjoint_names_shared_sources_origins_and_content(tmp_path):
    src = make_masks_source(tmp_path / "src")
    train, held = tmp_path / "train", tmp_path / "held"
    extract_objects(read_masks(src), train, "a", "masks", root=str(src), min_pixels=1)
    extract_objects(read_masks(make_masks_source(tmp_path / "src2", seed=7)), held, "b", "masks",
                    root=str(tmp_path / "src2"), min_pixels=1)
    assert check_disjoint(train, held) == []
    extract_objects(read_masks(src), held, "c", "masks", root=str(src), min_pixels=1)   # same files again
    problems = "\n".join(check_disjoint(train, held))
    assert "reads" in problems and "origin file images/o0.png" in problems and "is identical to training" in problems
    extract_objects(read_masks(src), held, "a", "masks", min_pixels=1)
    assert "source 'a' is in both" in "\n".join(check_disjoint(train, held))


def test_objects_command(tmp_path, capsys):
    src = make_masks_source(tmp_path / "src")
    out = tmp_path / "objects"
    assert cli_main(["objects", "extract", "--reader", "masks", "--root", str(src), "--out", str(out), "--name",
                     "mine", "--licence", "CC0", "--min-pixels", "1", "--no-progress"]) == 0
    assert "mine: wrote 3 objects" in capsys.readouterr().out
    assert cli_main(["objects", "list", "--dir", str(out)]) == 0
    assert "mine: 3 objects" in capsys.readouterr().out
    assert cli_main(["objects", "check-disjoint", "--train", str(out), "--heldout", str(out)]) == 1
    assert cli_main(["objects", "extract", "--reader", "voc", "--out", str(out)]) == 2
    assert "needs --root" in capsys.readouterr().err
    davis = make_davis(tmp_path / "DAVIS")
    assert cli_main(["objects", "extract", "--reader", "davis", "--root", str(davis), "--out", str(out), "--name",
                     "davis", "--sequences", "camel,bmx-trees", "--frame-step", "3", "--min-pixels", "1",
                     "--no-progress"]) == 0
    assert "davis: wrote 4 objects" in capsys.readouterr().out      # frames 0 and 3 of camel and bmx-trees
    assert cli_main(["objects", "extract", "--reader", "masks", "--root", str(src), "--out", str(out),
                     "--sequences", "camel", "--no-progress"]) == 2
    assert "apply to --reader davis only" in capsys.readouterr().err
