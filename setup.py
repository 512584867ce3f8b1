from setuptools import find_packages, setup

import re
from pathlib import Path

version = re.search(r'__version__ = "([^"]+)"', Path("fake/__init__.py").read_text()).group(1)

setup(
    name="fake",
    version=version,
    description="Capistrano-style deploys for Fabric 3: roles, hooks, releases, rollback",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["fake", "fake.*"]),
    python_requires=">=3.10",
    install_requires=["fabric>=3.2", "invoke>=2.0"],
    extras_require={"test": ["pytest", "mock"]},
    entry_points={
        "console_scripts": [
            "fab = fake.main:main",
            "fake = fake.main:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: System :: Software Distribution",
    ],
)
