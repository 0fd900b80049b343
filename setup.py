"""ament_python package: colcon builds it in ros2_ws/, pip installs it in a venv (make test / make demo)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "densehybrid_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={f"{PACKAGE}.training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/params", glob("params/*.yaml") + ["params/dds.env", "params/fastdds.xml"]),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.yaml") + glob("models/*.md")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    extras_require={"tensorrt": ["tensorrt>=8.6,<11", "pycuda>=2022.2"]},
    zip_safe=False,
    maintainer="densehybrid_ros developers",
    maintainer_email="densehybrid-ros@example.org",
    description="DenseHybrid open-set semantic segmentation and road-obstacle alerts for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "detector = densehybrid_ros.ros.detector_node:main",
            "multi_detector = densehybrid_ros.ros.multi_camera_node:main",
            "densehybrid = densehybrid_ros.cli:main",
        ],
    },
)
