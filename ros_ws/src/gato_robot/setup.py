"""ament_python package `gato_robot`: installs the node to lib/gato_robot and launch/config to
share/gato_robot. The policy library itself is the pip package `gato-robot` (install it into the
same Python environment: `pip install -e <repo>[deploy]`)."""

from glob import glob

from setuptools import setup

PACKAGE = "gato_robot"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=["gato_robot_ros"],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="gato_robot maintainers",
    maintainer_email="maintainers@gato-robot.invalid",
    description="Lifecycle node running the gato_robot policy at 20 Hz on a real arm.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["stack_node = gato_robot_ros.stack_node:main"]},
)
