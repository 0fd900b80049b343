"""Seeded generation of a world along the road for the four layouts (urban, suburban, highway, rural).

A world is generated for a stretch of road [z_begin, z_end] (world metres), so a single frame and a whole drive
come from the same code: the single frame is just the drive's first frame."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import textures as tx
from .objects import (Building, Bush, Linear, Person, Pole, Sign, Thing, Tree, TrafficLight, Vehicle)
from .road import Decal, Road

LAYOUTS = ("urban", "suburban", "highway", "rural")

WALLS = [(200, 190, 170), (180, 170, 160), (150, 90, 70), (220, 215, 205), (120, 120, 125), (170, 150, 120),
         (140, 150, 160), (190, 160, 130), (110, 100, 95), (230, 225, 190), (160, 110, 90), (90, 95, 105)]
ROOFS = [(120, 50, 40), (80, 70, 70), (60, 60, 65), (140, 80, 50), (90, 60, 45), (50, 55, 60)]
GLASS = [(50, 60, 75), (70, 85, 100), (40, 45, 50), (90, 110, 130), (60, 70, 70)]
PAINTS = [(230, 230, 232), (20, 20, 22), (160, 162, 166), (90, 92, 96), (150, 20, 20), (30, 50, 120),
          (30, 70, 40), (220, 180, 30), (110, 80, 50), (200, 200, 190), (60, 60, 60), (120, 140, 170),
          (180, 60, 20), (240, 240, 240)]
SHIRTS = [(200, 40, 40), (40, 60, 150), (230, 230, 230), (30, 30, 30), (90, 130, 70), (220, 180, 60),
          (120, 80, 160), (200, 120, 150), (100, 100, 100), (60, 140, 160), (170, 120, 80), (240, 140, 40)]
PANTS = [(40, 45, 70), (30, 30, 30), (90, 80, 70), (60, 70, 100), (150, 130, 100), (80, 80, 80)]
SKINS = [(230, 190, 160), (200, 150, 110), (150, 100, 70), (100, 70, 50), (240, 205, 180)]
HAIRS = [(30, 25, 20), (80, 50, 30), (150, 120, 70), (200, 200, 200), (20, 20, 20)]
LEAVES = [(60, 100, 35), (80, 120, 40), (45, 80, 30), (100, 130, 50), (70, 95, 45), (120, 120, 40)]
AUTUMN = [(170, 110, 30), (150, 70, 25), (190, 150, 40)]
GRASS = [(95, 125, 55), (110, 135, 60), (130, 130, 70), (150, 140, 90), (80, 110, 50), (120, 100, 70)]


def _c(rng: np.random.Generator, palette, amount: float = 0.08) -> np.ndarray:
    return tx.jitter(rng, tx.rgb(*palette[int(rng.integers(len(palette)))]), amount)


@dataclass
class Background:
    """Far silhouettes as height profiles over world azimuth (0.25 degree bins), each at one depth."""
    layers: list[tuple[np.ndarray, float, int, np.ndarray]] = field(default_factory=list)  # (heights, depth, label, rgb)


@dataclass
class World:
    layout: str
    road: Road
    things: list[Thing]
    background: Background
    ego_lane: int
    lane_offset: float
    tree_season: str = "summer"

    def vehicles(self) -> list[Vehicle]:
        return [t for t in self.things if isinstance(t, Vehicle)]


def _profile_noise(rng, n: int, cells: int) -> np.ndarray:
    grid = rng.random(cells + 1)
    xs = np.linspace(0, cells, n)
    return np.interp(xs, np.arange(cells + 1), grid).astype(np.float32)


def _background(rng, layout: str) -> Background:
    n = 1440
    bg = Background()
    hills = 15 + 45 * _profile_noise(rng, n, 12) + 10 * _profile_noise(rng, n, 60)
    hill_rgb = tx.jitter(rng, tx.rgb(95, 115, 90) if layout != "rural" or rng.random() < 0.7 else tx.rgb(130, 120, 90))
    bg.layers.append((hills * rng.uniform(0.3, 1.2), 600.0, 9, hill_rgb))
    trees = 6 + 10 * _profile_noise(rng, n, 400) + 5 * _profile_noise(rng, n, 1400)
    if layout in ("suburban", "rural", "highway"):
        bg.layers.append((trees * rng.uniform(0.6, 1.3), 320.0, 8, tx.jitter(rng, tx.rgb(55, 80, 40))))
    if layout in ("urban", "suburban") or (layout == "highway" and rng.random() < 0.3):
        sky = np.zeros(n, np.float32)
        i = 0
        scale = 1.0 if layout == "urban" else 0.4
        while i < n:
            w = int(rng.integers(3, 20))
            if rng.random() < 0.8:
                sky[i:i + w] = rng.uniform(10, 70) * scale
            i += w
        bg.layers.append((sky, 400.0, 2, tx.jitter(rng, tx.rgb(130, 130, 140))))
    return bg


def _road(rng, layout: str) -> Road:
    k = int(rng.integers(1, 3))
    amps = tuple(float(a) for a in rng.uniform(0, 1, k) * (rng.choice([0.0, 8.0, 25.0], p=[0.25, 0.5, 0.25])))
    freqs = tuple(float(f) for f in rng.uniform(0.004, 0.02, k))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * math.pi, k))
    r = Road(amps=amps, freqs=freqs, phases=phases)
    r.offsets = (float(rng.uniform(0, 256)), float(rng.uniform(0, 256)))
    r.asphalt = tx.jitter(rng, tx.rgb(*[(85, 85, 88), (70, 70, 72), (105, 103, 100), (60, 60, 62), (95, 92, 90)][int(rng.integers(5))]), 0.06)
    r.paving = _c(rng, [(150, 145, 140), (170, 165, 155), (130, 130, 135), (160, 120, 110), (185, 180, 170)], 0.05)
    r.terrain = _c(rng, GRASS, 0.05)
    r.terrain_far = tx.jitter(rng, r.terrain, 0.12)
    r.wear = float(rng.uniform(0.05, 0.3))
    r.tile = float(rng.choice([0.3, 0.5, 0.6]))
    if layout == "urban":
        r.lane_width = float(rng.uniform(3.0, 3.6))
        r.lanes_right = int(rng.choice([1, 2], p=[0.5, 0.5]))
        r.lanes_left = int(rng.choice([1, 2], p=[0.6, 0.4]))
        r.median = float(rng.choice([0.0, rng.uniform(1.5, 4.0)], p=[0.8, 0.2]))
        r.shoulder = float(rng.choice([rng.uniform(0.2, 0.6), rng.uniform(2.0, 2.5)], p=[0.5, 0.5]))
        r.sidewalk = float(rng.uniform(2.5, 5.0))
        r.verge = float(rng.choice([0.0, rng.uniform(1.0, 2.0)], p=[0.75, 0.25]))
        r.dash = (3.0, float(rng.choice([3.0, 6.0])))
        r.centre_line = str(rng.choice(["dashed", "solid", "double"]))
        r.centre_yellow = bool(rng.random() < 0.3)
        r.edge_lines = bool(rng.random() < 0.3)
    elif layout == "suburban":
        r.lane_width = float(rng.uniform(3.0, 3.5))
        r.lanes_right = r.lanes_left = 1
        r.shoulder = float(rng.choice([rng.uniform(0.2, 0.5), rng.uniform(2.0, 2.4)], p=[0.6, 0.4]))
        r.sidewalk = float(rng.uniform(1.5, 2.5))
        r.verge = float(rng.uniform(0.8, 3.0))
        r.dash = (3.0, 6.0)
        r.centre_line = str(rng.choice(["dashed", "none", "solid", "double"], p=[0.5, 0.2, 0.15, 0.15]))
        r.centre_yellow = bool(rng.random() < 0.4)
    elif layout == "highway":
        r.lane_width = float(rng.uniform(3.5, 3.8))
        r.lanes_right = int(rng.choice([2, 3], p=[0.6, 0.4]))
        r.lanes_left = r.lanes_right
        r.median = float(rng.uniform(1.0, 6.0))
        r.median_terrain = bool(r.median > 2.5)
        r.shoulder = float(rng.uniform(1.0, 3.0))
        r.sidewalk = 0.0
        r.verge = 0.0
        r.dash = (float(rng.choice([3.0, 6.0])), float(rng.choice([9.0, 12.0])))
        r.edge_lines = True
        r.crosswalks = False
        r.amps = tuple(a * 0.5 for a in r.amps)
        r.freqs = tuple(f * 0.4 for f in r.freqs)
    else:
        r.lane_width = float(rng.uniform(2.7, 3.3))
        r.lanes_right = r.lanes_left = 1
        r.shoulder = float(rng.uniform(0.0, 0.6))
        r.sidewalk = 0.0
        r.verge = 0.0
        r.centre_line = str(rng.choice(["dashed", "none", "solid"], p=[0.5, 0.35, 0.15]))
        r.centre_yellow = bool(rng.random() < 0.3)
        r.edge_lines = bool(rng.random() < 0.4)
        r.crosswalks = False
        r.terrain = _c(rng, GRASS + [(140, 115, 80), (160, 140, 100)], 0.06)
        r.terrain_far = tx.jitter(rng, r.terrain, 0.15)
        r.asphalt = tx.jitter(rng, r.asphalt * rng.uniform(0.9, 1.15), 0.04)
    return r


def _decals(rng, road: Road, z0: float, z1: float, layout: str) -> None:
    """Asphalt patches, manholes, oil stains, curb drains and puddles (puddles only show when the road is wet)."""
    per_100m = {"urban": (3, 2.5, 2, 3, 2), "suburban": (2, 1.5, 1, 2, 2), "highway": (2, 0, 2, 0, 1),
                "rural": (3, 0, 1, 0, 3)}[layout]
    kinds = ("patch", "manhole", "stain", "drain", "puddle")
    span = (z1 - z0) / 100.0
    for kind, rate in zip(kinds, per_100m):
        for _ in range(int(rng.poisson(rate * span))):
            z = float(rng.uniform(z0, z1))
            lanes = [i for i in range(road.lanes_right)] + [-(i + 1) for i in range(road.lanes_left)]
            lane = lanes[int(rng.integers(len(lanes)))]
            if kind == "patch":
                dc = Decal(kind, road.lane_centre(lane) + float(rng.uniform(-1, 1)), z, float(rng.uniform(0.5, 4.0)),
                           float(rng.uniform(0.4, 1.6)), float(rng.choice([rng.uniform(0.7, 0.9), rng.uniform(1.08, 1.2)])))
            elif kind == "manhole":
                r = float(rng.uniform(0.3, 0.4))
                dc = Decal(kind, road.lane_centre(lane) + float(rng.uniform(-1, 1)), z, r, r)
            elif kind == "stain":
                dc = Decal(kind, road.lane_centre(lane) + float(rng.uniform(-0.3, 0.3)), z, float(rng.uniform(0.4, 1.5)),
                           float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.6, 0.85)))
            elif kind == "drain":
                side = 1 if rng.random() < 0.5 else -1
                edge = road.right_edge if side > 0 else road.left_edge
                dc = Decal(kind, edge - side * 0.3, z, 0.3, 0.2)
            else:
                side = 1 if rng.random() < 0.5 else -1
                edge = road.right_edge if side > 0 else road.left_edge
                dc = Decal(kind, edge - side * float(rng.uniform(0.5, 2.0)), z, float(rng.uniform(0.8, 3.0)),
                           float(rng.uniform(0.4, 1.2)))
            road.decals.append(dc)


def _crossings(rng, road: Road, z0: float, z1: float, every: tuple[float, float], width: tuple[float, float]):
    z = z0 + rng.uniform(15, every[1])
    while z < z1:
        road.crossings.append((float(z), float(rng.uniform(*width))))
        z += rng.uniform(*every)


def _vehicle(rng, d: float, z: float, speed: float, oncoming: bool, truck_p: float) -> Vehicle:
    u = rng.random()
    if u < truck_p * 0.6:
        kind = "truck"
        dims = (rng.uniform(6.5, 12.0), rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.9))
    elif u < truck_p:
        kind = "bus"
        dims = (rng.uniform(10.0, 12.5), rng.uniform(2.45, 2.55), rng.uniform(2.9, 3.3))
    else:
        kind = str(rng.choice(["sedan", "hatch", "suv", "van"], p=[0.4, 0.3, 0.2, 0.1]))
        dims = {"sedan": (4.6, 1.8, 1.45), "hatch": (4.0, 1.75, 1.5), "suv": (4.7, 1.9, 1.75), "van": (5.0, 1.95, 2.1)}[kind]
        dims = tuple(x * rng.uniform(0.95, 1.05) for x in dims)
    paint = _c(rng, PAINTS, 0.05)
    if kind == "bus":
        paint = _c(rng, [(200, 30, 30), (230, 200, 40), (40, 90, 160), (230, 230, 230), (40, 130, 80)], 0.05)
    return Vehicle(kind=kind, d=d, z0=z, speed=speed, length=float(dims[0]), width=float(dims[1]), height=float(dims[2]),
                   paint=paint, glass=_c(rng, GLASS, 0.05), oncoming=oncoming,
                   cargo_rgb=_c(rng, WALLS, 0.1), brake=bool(rng.random() < 0.15))


def _traffic(rng, road: Road, things: list, z0: float, z1: float, density: float, truck_p: float, speed: float,
             ego_lane: int) -> None:
    lanes = list(range(road.lanes_right)) + [-(i + 1) for i in range(road.lanes_left)]
    for lane in lanes:
        z = z0 + rng.uniform(0, 30 / density)
        while z < z1:
            oncoming = lane < 0
            v = _vehicle(rng, road.lane_centre(lane) + rng.uniform(-0.3, 0.3), z, (-1 if oncoming else 1) * speed * rng.uniform(0.8, 1.1),
                         oncoming, truck_p)
            if not (lane == ego_lane and z < 6.0 + v.length / 2):   # keep clear of the ego car's own space
                things.append(v)
            z += v.length + rng.uniform(6, 45) / density


def _parked(rng, road: Road, things: list, z0: float, z1: float, side: int, fill: float) -> None:
    d = side * (road.right_edge if side > 0 else -road.left_edge) - side * 1.15
    z = z0 + rng.uniform(0, 10)
    while z < z1:
        if rng.random() < fill and not road.in_crossing(z - 3, z + 3, 8.0):
            v = _vehicle(rng, d + side * rng.uniform(-0.15, 0.15), z, 0.0, bool(side < 0 and rng.random() < 0.5), 0.05)
            v.brake = False
            things.append(v)
            z += v.length + rng.uniform(0.8, 3.0)
        else:
            z += rng.uniform(3, 12)


def _people(rng, road: Road, things: list, z0: float, z1: float, per_100m: float, band: tuple[float, float]) -> None:
    n = int(rng.poisson(per_100m * (z1 - z0) / 100))
    for _ in range(n):
        side = 1 if rng.random() < 0.5 else -1
        edge = road.right_edge if side > 0 else -road.left_edge
        d = side * (edge + rng.uniform(*band))
        things.append(_person(rng, d, float(rng.uniform(z0, z1))))


def _person(rng, d: float, z: float) -> Person:
    return Person(d=d, z=z, height=float(rng.uniform(1.5, 1.95)), shirt=_c(rng, SHIRTS), pants=_c(rng, PANTS),
                  skin=_c(rng, SKINS, 0.04), hair=_c(rng, HAIRS, 0.04), phase=float(rng.uniform(0, 6.28)),
                  walk_speed=float(rng.choice([-1, 1]) * rng.uniform(0.0, 1.5)), bag=bool(rng.random() < 0.25))


def _tree(rng, d: float, z: float, season: str, conifer_p: float = 0.1, scale: float = 1.0) -> Tree:
    conifer = bool(rng.random() < conifer_p)
    h = float(rng.uniform(5, 12) * scale)
    crown = float(h * (rng.uniform(0.2, 0.3) if conifer else rng.uniform(0.25, 0.4)))
    leaves = LEAVES if season == "summer" or conifer else AUTUMN + LEAVES[:2]
    if not conifer:
        # street trees are pruned: the crown starts above head and van height
        lift = max(0.0, float(rng.uniform(2.4, 3.2)) - (h - 2.2 * crown))
        h += lift
    blobs = []
    cy = h - crown
    for _ in range(int(rng.integers(3, 7))):
        blobs.append((float(rng.uniform(-0.5, 0.5) * crown), float(cy + rng.uniform(-0.4, 0.5) * crown),
                      float(crown * rng.uniform(0.5, 0.8))))
    return Tree(d=d, z=z, height=h, crown=crown, trunk_rgb=_c(rng, [(80, 60, 45), (100, 85, 70), (60, 50, 40)]),
                leaf_rgb=_c(rng, [(40, 70, 40), (30, 60, 35)] if conifer else leaves, 0.08), conifer=conifer,
                tex=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))), blobs=tuple(blobs))


def _sign(rng, d: float, z: float, big: bool = False) -> Sign:
    kind = str(rng.choice(["round", "triangle", "square", "octagon", "rect"], p=[0.35, 0.25, 0.2, 0.05, 0.15]))
    red, white, blue = tx.rgb(200, 20, 25), tx.rgb(235, 235, 235), tx.rgb(20, 70, 170)
    cols = {"round": [(red, white), (blue, blue), (red, blue)], "triangle": [(red, white)], "octagon": [(red, red)],
            "square": [(blue, blue), (white, blue), (tx.rgb(240, 200, 20), tx.rgb(240, 200, 20))],
            "rect": [(blue, blue), (tx.rgb(20, 110, 60), tx.rgb(20, 110, 60)), (white, white)]}[kind]
    outer, inner = cols[int(rng.integers(len(cols)))]
    size = float(rng.uniform(0.6, 0.9) * (2.5 if big else 1.0))
    return Sign(d=d, z=z, kind="rect" if big else kind, size=size, post_h=float(rng.uniform(1.8, 2.6) * (1.3 if big else 1.0)),
                colours=(outer, inner), facing=-1 if (d < 0 and rng.random() < 0.5) else 1)


def _buildings(rng, road: Road, things: list, z0: float, z1: float, side: int, suburban: bool) -> None:
    edge = abs(road.outer(side))
    z = z0 + rng.uniform(-10, 0)
    while z < z1:
        length = float(rng.uniform(9, 16) if suburban else rng.uniform(8, 30))
        if road.in_crossing(z, z + length, 1.0):
            z += 4.0
            continue
        if rng.random() < (0.45 if suburban else 0.12):
            z += rng.uniform(3, 10)
            continue
        setback = float(rng.uniform(5, 12) if suburban else rng.choice([0.0, rng.uniform(0.5, 2.0)], p=[0.7, 0.3]))
        floors = int(rng.integers(1, 3) if suburban else rng.integers(2, 10))
        floor_h = float(rng.uniform(2.8, 3.5))
        pitch = float(rng.uniform(2.5, 4.0))
        win_w = float(min(pitch - 0.6, rng.uniform(0.9, 2.0)))
        b = Building(side=side, d=side * (edge + setback), z0=float(z), z1=float(z + length),
                     depth=float(rng.uniform(8, 20)), height=floors * floor_h + float(rng.uniform(0.3, 1.5)),
                     wall=_c(rng, WALLS), trim=_c(rng, [(230, 230, 225), (60, 60, 60), (120, 100, 80), (200, 190, 170)]),
                     glass=_c(rng, GLASS), floor_h=floor_h, win_w=win_w, win_h=float(rng.uniform(1.1, 1.8)), win_pitch=pitch,
                     shop=bool(not suburban and rng.random() < 0.5), shop_rgb=_c(rng, GLASS + [(150, 120, 90)]),
                     roof_h=float(rng.uniform(1.5, 3.5)) if suburban or rng.random() < 0.1 else 0.0,
                     roof_rgb=_c(rng, ROOFS), tex=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))),
                     brick=bool(rng.random() < 0.25), lit_seed=int(rng.integers(0, 256)),
                     door_at=float(rng.uniform(1.5, length - 1.5)) if suburban else -1.0)
        things.append(b)
        z += length + (rng.uniform(0, 0.5) if not suburban else rng.uniform(4, 15))


def _furniture(rng, road: Road, things: list, z0: float, z1: float, side: int, lamp_every: float, arm: bool,
               signs_per_100m: float, at: float) -> None:
    edge = road.right_edge if side > 0 else -road.left_edge
    d = side * (edge + at)
    pole_rgb = _c(rng, [(110, 110, 110), (70, 75, 70), (140, 140, 135), (60, 60, 65)])
    z = z0 + rng.uniform(0, lamp_every)
    while z < z1:
        if not road.in_crossing(z - 1, z + 1):
            things.append(Pole(d=d, z=float(z), height=float(rng.uniform(6.5, 9.5)), radius=float(rng.uniform(0.08, 0.14)),
                               rgb=pole_rgb, arm=float(rng.uniform(1.0, 2.5)) if arm else 0.0, arm_side=-side, lamp=arm))
        z += lamp_every * rng.uniform(0.9, 1.1)
    for _ in range(int(rng.poisson(signs_per_100m * (z1 - z0) / 100))):
        zs = float(rng.uniform(z0, z1))
        if not road.in_crossing(zs - 1, zs + 1):
            things.append(_sign(rng, d + side * rng.uniform(-0.2, 0.4), zs))


def _lights_at_crossings(rng, road: Road, things: list) -> None:
    for zc, w in road.crossings:
        state = int(rng.integers(3))
        for side, zz in ((1, zc - 1.5), (-1, zc + w + 1.0)):
            edge = road.right_edge if side > 0 else -road.left_edge
            arm = float(rng.uniform(2.5, 5.0)) if (side > 0 and rng.random() < 0.6) else 0.0
            things.append(TrafficLight(d=side * (edge + 0.6), z=float(zz), post_h=float(rng.uniform(2.4, 3.2)) + (2.5 if arm else 0.0),
                                       state=state, arm=arm, arm_side=-side))


def generate_world(rng: np.random.Generator, layout: str, z_begin: float, z_end: float) -> World:
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    road = _road(rng, layout)
    things: list[Thing] = []
    season = str(rng.choice(["summer", "autumn"], p=[0.75, 0.25]))
    ego_lane = int(rng.integers(road.lanes_right))
    lane_offset = float(rng.uniform(-0.35, 0.35))
    z0, z1 = z_begin - 20.0, z_end
    if layout == "urban":
        _crossings(rng, road, z0 + 20, z1, (60, 160), (10, 18))
        for side in (1, -1):
            _buildings(rng, road, things, z0, z1, side, suburban=False)
            _furniture(rng, road, things, z0, z1, side, float(rng.uniform(18, 35)), True, float(rng.uniform(1, 4)),
                       road.verge + 0.5)
            if road.shoulder > 1.5:
                _parked(rng, road, things, z0, z1, side, float(rng.uniform(0.3, 0.9)))
            if road.verge > 0 or rng.random() < 0.4:
                zt = z0 + rng.uniform(0, 10)
                gap = float(rng.uniform(7, 15))
                while zt < z1:
                    if not road.in_crossing(zt - 3, zt + 3):
                        edge = road.right_edge if side > 0 else -road.left_edge
                        at = road.verge / 2 if road.verge > 0 else 1.0
                        things.append(_tree(rng, side * (edge + at), float(zt), season, 0.0, 0.8))
                    zt += gap * rng.uniform(0.8, 1.2)
        _lights_at_crossings(rng, road, things)
        _people(rng, road, things, z0, z1, float(rng.uniform(2, 25)), (road.verge + 0.4, road.verge + road.sidewalk - 0.4))
        for zc, w in road.crossings:
            if rng.random() < 0.3:
                things.append(_person(rng, float(rng.uniform(road.left_edge, road.right_edge)), zc - rng.uniform(1.5, 4.0)))
        _traffic(rng, road, things, z0, z1, float(rng.uniform(0.4, 1.5)), 0.15, float(rng.uniform(8, 14)), ego_lane)
    elif layout == "suburban":
        _crossings(rng, road, z0 + 20, z1, (90, 220), (8, 12))
        for side in (1, -1):
            _buildings(rng, road, things, z0, z1, side, suburban=True)
            edge = abs(road.outer(side))
            kind = str(rng.choice(["fence", "hedge", "wall", "none"], p=[0.35, 0.3, 0.15, 0.2]))
            if kind != "none":
                zf = z0
                while zf < z1:
                    seg = float(rng.uniform(10, 40))
                    if not road.in_crossing(zf, zf + seg, 1.0) and rng.random() < 0.8:
                        h = float(rng.uniform(0.8, 1.8))
                        rgbc = (_c(rng, LEAVES) if kind == "hedge" else _c(rng, WALLS if kind == "wall" else
                                                                           [(240, 240, 235), (120, 90, 60), (90, 90, 90), (60, 70, 60)]))
                        things.append(Linear(kind=kind, d=side * (edge + 0.4), z0=zf, z1=zf + seg, height=h, rgb=rgbc,
                                             tex=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256)))))
                    zf += seg + rng.uniform(1, 5)
            zt = z0 + rng.uniform(0, 8)
            while zt < z1:
                if not road.in_crossing(zt - 3, zt + 3):
                    dd = float(rng.choice([road.verge / 2, rng.uniform(2, 8)]) if road.verge > 0 else rng.uniform(2, 8))
                    base = road.right_edge if side > 0 else -road.left_edge
                    if dd < road.verge:
                        things.append(_tree(rng, side * (base + dd), float(zt), season, 0.15))
                    else:
                        things.append(_tree(rng, side * (edge + dd), float(zt), season, 0.2))
                zt += rng.uniform(6, 20)
            for _ in range(int(rng.poisson(4))):
                things.append(Bush(d=side * (edge + rng.uniform(1, 6)), z=float(rng.uniform(z0, z1)), height=float(rng.uniform(0.6, 1.6)),
                                   width=float(rng.uniform(0.8, 2.5)), rgb=_c(rng, LEAVES), tex=(float(rng.uniform(0, 256)), 3.0)))
            _furniture(rng, road, things, z0, z1, side, float(rng.uniform(30, 45)), bool(rng.random() < 0.7),
                       float(rng.uniform(0.5, 2)), road.verge + road.sidewalk + 0.3 if rng.random() < 0.5 else road.verge * 0.5)
            if road.shoulder > 1.5:
                _parked(rng, road, things, z0, z1, side, float(rng.uniform(0.1, 0.5)))
        _people(rng, road, things, z0, z1, float(rng.uniform(0, 6)), (road.verge + 0.3, road.verge + road.sidewalk - 0.3))
        _traffic(rng, road, things, z0, z1, float(rng.uniform(0.3, 0.8)), 0.08, float(rng.uniform(8, 13)), ego_lane)
    elif layout == "highway":
        m = road.median
        barrier = str(rng.choice(["barrier", "rail"]))
        if barrier == "barrier":
            things.append(Linear(kind="barrier", d=0.001, z0=z0, z1=z1, height=float(rng.uniform(0.8, 1.1)),
                                 rgb=_c(rng, [(170, 170, 165), (150, 150, 150)]), tex=(5.0, 9.0), pitch=4.0))
        else:
            for side in (1, -1):
                things.append(Linear(kind="rail", d=side * max(m / 2 - 0.3, 0.2), z0=z0, z1=z1, height=0.85,
                                     rgb=_c(rng, [(170, 175, 180), (140, 145, 150)]), pitch=4.0))
        for side in (1, -1):
            edge = road.right_edge if side > 0 else -road.left_edge
            if rng.random() < 0.7:
                things.append(Linear(kind="rail", d=side * (edge + 0.5), z0=z0, z1=z1, height=0.85,
                                     rgb=_c(rng, [(170, 175, 180), (140, 145, 150)]), pitch=4.0))
            if rng.random() < 0.25:
                things.append(Linear(kind="wall", d=side * (edge + rng.uniform(4, 8)), z0=z0 + rng.uniform(0, 60),
                                     z1=z1, height=float(rng.uniform(2.5, 4.5)), rgb=_c(rng, WALLS), tex=(3.0, 8.0)))
            zt = z0
            while zt < z1:
                zt += rng.uniform(4, 25)
                things.append(_tree(rng, side * (edge + rng.uniform(5, 30)), float(zt), season, 0.3))
            for _ in range(int(rng.poisson(3))):
                things.append(Bush(d=side * (edge + rng.uniform(2, 10)), z=float(rng.uniform(z0, z1)), height=float(rng.uniform(0.6, 2.0)),
                                   width=float(rng.uniform(1, 3.5)), rgb=_c(rng, LEAVES), tex=(float(rng.uniform(0, 256)), 7.0)))
            for _ in range(int(rng.poisson(1.5))):
                things.append(_sign(rng, side * (edge + 1.5), float(rng.uniform(z0, z1)), big=True))
        if rng.random() < 0.7:
            zl = z0 + rng.uniform(0, 40)
            every = float(rng.uniform(35, 60))
            while zl < z1:
                for side in (1, -1):
                    things.append(Pole(d=side * 0.05 if barrier == "barrier" else 0.0, z=float(zl), height=10.0, radius=0.14,
                                       rgb=tx.rgb(150, 150, 150), arm=2.0, arm_side=side, lamp=True))
                zl += every
        _traffic(rng, road, things, z0, z1, float(rng.uniform(0.3, 1.0)), 0.3, float(rng.uniform(20, 30)), ego_lane)
    else:  # rural
        side_f = int(rng.choice([1, -1]))
        zt = z0
        forest = rng.random() < 0.35
        for side in (1, -1):
            edge = road.right_edge if side > 0 else -road.left_edge
            zt = z0 + rng.uniform(0, 10)
            row = rng.random() < 0.5
            while zt < z1:
                dd = rng.uniform(2, 5) if row else rng.uniform(3, 40 if not forest else 15)
                things.append(_tree(rng, side * (edge + dd), float(zt), season, 0.6 if forest else 0.2, 1.3 if forest else 1.0))
                zt += rng.uniform(3, 8) if (row or forest) else rng.uniform(8, 30)
            if rng.random() < 0.4:
                things.append(Linear(kind="fence", d=side * (edge + rng.uniform(1.5, 4.0)), z0=z0 + rng.uniform(0, 50), z1=z1,
                                     height=float(rng.uniform(1.0, 1.5)), rgb=_c(rng, [(120, 90, 60), (150, 130, 100), (90, 80, 70)]),
                                     pitch=float(rng.uniform(2.5, 4.0))))
            for _ in range(int(rng.poisson(2))):
                things.append(Bush(d=side * (edge + rng.uniform(1, 8)), z=float(rng.uniform(z0, z1)), height=float(rng.uniform(0.5, 1.5)),
                                   width=float(rng.uniform(1, 3)), rgb=_c(rng, LEAVES), tex=(float(rng.uniform(0, 256)), 1.0)))
            if rng.random() < 0.35:
                zb = float(rng.uniform(z0 + 30, z1))
                things.append(Building(side=side, d=side * (edge + rng.uniform(15, 40)), z0=zb, z1=zb + float(rng.uniform(8, 14)),
                                       depth=float(rng.uniform(8, 12)), height=float(rng.uniform(3, 6)), wall=_c(rng, WALLS),
                                       trim=_c(rng, [(230, 230, 225), (120, 100, 80)]), glass=_c(rng, GLASS),
                                       roof_h=float(rng.uniform(2, 4)), roof_rgb=_c(rng, ROOFS), win_pitch=3.0, win_w=1.0,
                                       tex=(float(rng.uniform(0, 256)), 0.0), lit_seed=int(rng.integers(256)), door_at=3.0))
        edge = road.right_edge if side_f > 0 else -road.left_edge
        zp = z0 + rng.uniform(0, 30)
        while zp < z1:
            things.append(Pole(d=side_f * (edge + rng.uniform(1.0, 2.5)), z=float(zp), height=float(rng.uniform(7, 9)), radius=0.12,
                               rgb=_c(rng, [(110, 90, 70), (130, 130, 130)])))
            zp += rng.uniform(35, 50)
        for _ in range(int(rng.poisson(1.5))):
            things.append(_sign(rng, side_f * (edge + 1.0), float(rng.uniform(z0, z1))))
        if rng.random() < 0.3:
            things.append(_person(rng, float(road.right_edge + rng.uniform(0.2, 1.5)), float(rng.uniform(10, 60))))
        _traffic(rng, road, things, z0, z1, float(rng.uniform(0.1, 0.4)), 0.2, float(rng.uniform(12, 20)), ego_lane)
    _decals(rng, road, z0, z1, layout)
    return World(layout=layout, road=road, things=things, background=_background(rng, layout), ego_lane=ego_lane,
                 lane_offset=lane_offset, tree_season=season)
