"""Packaging: the wheel's layout, the installed console script, and light imports.

The wheel is built from a copy of the source tree in a temp folder, so the test neither writes
``build/`` into the checkout nor picks up stale files a previous in-tree build left there.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What setuptools needs to build the wheel; everything else (.venv, .git, caches) stays behind.
_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "prefrl", "envs", "ui")


def _run(cmd, *, cwd, env=None, timeout=120):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _clean_env(**extra) -> dict[str, str]:
    """The environment minus anything that would put the checkout or the dev venv on sys.path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _has_setuptools() -> bool:
    """Whether this venv's setuptools meets pyproject's ``requires = ["setuptools>=77"]``."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in _SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src]
    # setuptools>=70.1 builds wheels without the `wheel` package, so the dev venv's setuptools
    # is enough and nothing needs downloading; without a recent enough one (Python 3.11's venv
    # seeds setuptools 65), fall back to build isolation, which fetches setuptools.
    if _has_setuptools():
        cmd.insert(4, "--no-build-isolation")
    _run(cmd, cwd=out, env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"), timeout=300)
    (whl,) = out.glob("prefrl-*.whl")
    return whl


def test_wheel_maps_envs_and_ui_under_prefrl(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("prefrl/__init__.py", "prefrl/cli.py", "prefrl/envs/__init__.py",
                     "prefrl/envs/toy.py", "prefrl/envs/mujoco_variants.py", "prefrl/ui/__init__.py",
                     "prefrl/ui/window.py", "prefrl/lm/__init__.py", "prefrl/lm/tasks.py"):
        assert required in names, f"{required} missing from {wheel.name}: {names}"
    tops = {n.split("/", 1)[0] for n in names}
    assert "envs" not in tops and "ui" not in tops, sorted(tops)
    assert tops <= {"prefrl", f"prefrl-{wheel.name.split('-')[1]}.dist-info"}, sorted(tops)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "prefrl = prefrl.cli:main" in entry_points


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; returns the venv folder.

    Installing torch, gymnasium, MuJoCo... again would take minutes and the network, so the
    fresh venv borrows the dev venv's dependencies through a ``.pth`` line that appends the dev
    venv's site-packages to sys.path. That is safe from the dev venv's editable install of
    prefrl: site.py only runs ``.pth`` files found in site dirs, not in folders a ``.pth`` line
    adds, so ``__editable__.prefrl-*.pth`` (which installs the finder mapping ``prefrl`` to the
    checkout) never runs; and the fresh venv's own site-packages comes first on sys.path, so
    its prefrl wins. The wheel is installed *before* the ``.pth`` is written, so pip does not see
    the dev venv's prefrl dist-info as "already installed". The asserts below check all of this.
    """
    root = tmp_path_factory.mktemp("venv") / "fresh"
    venv.EnvBuilder(with_pip=False).create(root)  # with_pip=False: no ensurepip, ~0.1 s
    py = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q",
          wheel], cwd=root, env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    fresh_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           cwd=root, env=_clean_env()).stdout.strip())
    (fresh_site / "_prefrl_dev_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return root


def test_wheel_installs_and_imports_from_site_packages(installed, tmp_path):
    py = installed / "bin" / "python"
    code = ("import sys, sysconfig, prefrl, prefrl.envs, prefrl.ui, prefrl.cli\n"
            "print(sysconfig.get_path('purelib'))\n"
            "for m in (prefrl, prefrl.envs, prefrl.ui, prefrl.cli): print(m.__file__)\n"
            "print(any('editable' in type(f).__module__ for f in sys.meta_path))\n")
    site, *files, editable_finder = _run([py, "-c", code], cwd=tmp_path,
                                         env=_clean_env()).stdout.split("\n")[:6]
    site = Path(site).resolve()
    assert site.is_relative_to(installed.resolve())
    for f in files:
        path = Path(f).resolve()
        assert path.is_relative_to(site / "prefrl"), f"{path} not from the fresh venv's {site}"
        assert not path.is_relative_to(REPO), path
    assert editable_finder == "False", "the dev venv's editable finder got installed"
    assert Path(files[1]).resolve() == site / "prefrl" / "envs" / "__init__.py"


def test_console_script_help(installed, tmp_path):
    script = installed / "bin" / "prefrl"
    assert script.exists(), list((installed / "bin").iterdir())
    out = _run([script, "--help"], cwd=tmp_path, env=_clean_env()).stdout
    assert "train" in out and "eval" in out, out


def _modules_after(statement: str, cwd: Path) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    return set(_run([sys.executable, "-c", code], cwd=cwd, env=_clean_env()).stdout.split())


def test_import_prefrl_is_light(tmp_path):
    loaded = _modules_after("import prefrl", tmp_path)
    heavy = {"pygame", "ale_py", "transformers"} & loaded
    assert not heavy, f"`import prefrl` loaded {sorted(heavy)}"


def test_import_prefrl_envs_does_not_load_mujoco(tmp_path):
    loaded = _modules_after("import prefrl.envs", tmp_path)
    assert "prefrl.envs" in loaded
    heavy = {"mujoco", "pygame", "ale_py", "transformers"} & loaded
    assert not heavy, f"`import prefrl.envs` loaded {sorted(heavy)}"
