"""ROS parameter glue for `DetectorConfig`: descriptors, declaration that never throws, run-time updates.

The ranges and meanings live in densehybrid_ros/config/detector.py; this module only translates them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from densehybrid_ros.config.detector import DetectorConfig, ParameterSpec
from densehybrid_ros.config.validation import ConfigError

_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_DOUBLE_ARRAY,
}


def descriptor_for(spec: ParameterSpec) -> ParameterDescriptor:
    d = ParameterDescriptor()
    d.name = spec.name
    d.type = _ROS_TYPES[spec.type]
    d.description = spec.description
    when = "changeable at run time" if spec.dynamic else "read at configure; change while unconfigured"
    d.additional_constraints = f"{spec.valid_text()}; {when}"
    # Not read_only even for static parameters: after a failed configure the operator must be able to fix e.g.
    # `model` and configure again. The node's set-parameters callback refuses static changes once configured.
    d.read_only = False
    if spec.type is float and spec.lo is not None and spec.hi is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif spec.type is int and spec.lo is not None and spec.hi is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


def _ros_default(spec: ParameterSpec) -> Any:
    return [float(v) for v in spec.default] if spec.type is list else spec.default


def declare_parameters(node: Node) -> dict[str, str]:
    """Declare every DetectorConfig parameter with its descriptor; return the start-up errors by parameter name.

    rclpy raises when a params file or `-p` override is out of range or of the wrong type. A node that throws in
    its constructor dies before anyone can read why, so the bad override is reported (naming the parameter and
    its valid range), the default is declared instead, and configure refuses to proceed while errors remain.
    """
    errors = {}
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps the params-file/-p values here
    for spec in DetectorConfig.specs():
        descriptor = descriptor_for(spec)
        try:
            node.declare_parameter(spec.name, _ros_default(spec), descriptor)
            continue
        except (InvalidParameterValueException, InvalidParameterTypeException) as e:
            given = overrides[spec.name].value if spec.name in overrides else None
            fixed = _coerce(spec, given)
            if fixed is not None:
                # YAML writes 1 for 1.0; accept an integer for a double parameter when it is in range.
                try:
                    node.declare_parameter(spec.name, fixed, descriptor, ignore_override=True)
                    continue
                except (InvalidParameterValueException, InvalidParameterTypeException):
                    pass
            try:
                spec.check(given)
                message = f"parameter '{spec.name}' = {given!r} rejected by ROS: {e}"
            except ConfigError as ce:
                message = str(ce)
            errors[spec.name] = message
        node.declare_parameter(spec.name, _ros_default(spec), descriptor, ignore_override=True)
    return errors


def _coerce(spec: ParameterSpec, value: Any) -> Any:
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.type is list and isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def read_values(node: Node) -> dict[str, Any]:
    return {spec.name: _plain(node.get_parameter(spec.name).value) for spec in DetectorConfig.specs()}


def _plain(value: Any) -> Any:
    # Array parameters come back as array.array or lists; the config wants plain sequences.
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def validate_update(params: list[Parameter], current: DetectorConfig | None) -> tuple[DetectorConfig | None, str]:
    """Check a set-parameters request. `current`: the configuration in use, None while unconfigured.

    Configured: returns (new config, "") or (None, reason); static parameters are refused while the node holds a
    model, and relations between parameters are checked. Unconfigured: every value is checked on its own (the
    operator may be fixing several in turn; configure checks the whole set) and `current` is returned.
    The reason names the parameter and its valid range."""
    configured = current is not None
    specs = {s.name: s for s in DetectorConfig.specs()}
    values = {}
    for p in params:
        spec = specs.get(p.name)
        if spec is None:
            continue  # e.g. use_sim_time: rclpy's own parameters are not ours to check
        if configured and not spec.dynamic:
            return None, (f"parameter '{p.name}' is read at configure and cannot change while the node is "
                          f"configured; deactivate and clean up first (run-time parameters: "
                          f"{', '.join(current.dynamic_names())})")
        value = _plain(p.value)
        coerced = _coerce(spec, value)
        values[p.name] = coerced if coerced is not None else value
    if not configured:
        for name, value in values.items():
            try:
                specs[name].check(value)
            except ConfigError as e:
                return None, str(e)
        return current, ""
    if not values:
        return current, ""
    try:
        return DetectorConfig.from_values(values, base=current), ""
    except ConfigError as e:
        return None, str(e)


# Parameters that name files or folders, and what each must be. Checked at configure (a node starting with a bad
# path says so naming the parameter and the path, instead of a later "not found" from deep in the runtime).
FILE_PARAMETERS = {"model": "file", "engine_cache_dir": "folder"}
_EXPECTED = {"model": "an .onnx file (or its .card.yaml)", "engine_cache_dir": "a folder"}


def file_parameter_problems(config: DetectorConfig) -> list[str]:
    """One message per file-naming parameter whose path is of the wrong kind; empty values (the defaults: the
    shipped model, engines beside the model) are not checked here. A folder that does not exist yet is fine for
    `engine_cache_dir` (engines are written there later); a `model` must exist."""
    problems = []
    for name, kind in FILE_PARAMETERS.items():
        value = getattr(config, name)
        if not value:
            continue
        path = Path(value).expanduser()
        where = f"parameter '{name}' = {value!r}"
        expected = _EXPECTED[name]
        if not path.exists():
            if kind == "file":
                problems.append(f"{where}: {path} does not exist, expected {expected}")
            elif path.parent != path and path.parent.exists() and not path.parent.is_dir():
                problems.append(f"{where}: {path.parent} is not a folder, expected {expected}")
        elif kind == "file" and path.is_dir():
            problems.append(f"{where}: {path} is a directory, expected {expected}")
        elif kind == "file" and not path.is_file():
            problems.append(f"{where}: {path} is not a regular file (a device, socket or pipe), expected {expected}")
        elif kind == "file" and not os.access(path, os.R_OK):
            problems.append(f"{where}: {path} is not readable by this process, expected {expected}")
        elif kind == "folder" and not path.is_dir():
            problems.append(f"{where}: {path} is a file, expected {expected}")
    return problems


def warn_unknown_overrides(node: Node) -> list[str]:
    """Params-file and `-p` names the node did not declare. rclpy drops them without a word, so a typo
    ('treshold') would leave the default in force; each is logged as a warning with the closest declared name.
    A warning, not an error: a params file may also hold other nodes' settings under a wildcard section."""
    import difflib

    overrides = getattr(node, "_parameter_overrides", {})
    declared = sorted(getattr(node, "_parameters", {}))
    unknown = sorted(n for n in overrides if not node.has_parameter(n) and not n.startswith("qos_overrides."))
    for name in unknown:
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        node.get_logger().warning(f"parameter '{name}' is not a parameter of this node and is ignored{hint}")
    return unknown
