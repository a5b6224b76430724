"""ament_python package twill_ros: the scheduler core, the ROS 2 nodes and the CLI."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "twill_ros"


def share(subdir: str, pattern: str) -> tuple[str, list[str]]:
    files = [path for path in glob(f"{subdir}/{pattern}") if os.path.isfile(path)]
    return (f"share/{PACKAGE}/{subdir}", sorted(files))


def generated_models() -> list[tuple[str, list[str]]]:
    """The tiny models scripts/make_models.py built (absent before it ran: nothing to add)."""
    folders = sorted({os.path.dirname(path) for path in glob("models/tiny/**/*", recursive=True)
                      if os.path.isfile(path)})
    return [share(folder, "*") for folder in folders]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml"),
        share("config/platforms", "*.yaml"),
        share("config/workloads", "*.yaml"),
        share("models", "*.yaml"),
        *generated_models(),
    ],
    install_requires=["setuptools", "PyYAML"],
    extras_require={"test": ["pytest", "hypothesis"]},
    zip_safe=True,
    maintainer="Twill-ROS maintainers",
    maintainer_email="twill-ros@example.org",
    description="Twill compound-AI scheduler for heterogeneous robot SoCs",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "twill_scheduler = twill_ros.node.scheduler_node:main",
            "perception_node = twill_ros.demo.perception_node:main",
            "planner_node = twill_ros.demo.planner_node:main",
            "twill = twill_ros.cli:main",
        ],
    },
)
