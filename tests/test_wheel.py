"""A wheel built from the repository works outside the checkout: it builds, publishes with its card and copies
the recipes; `import hf_divsft` loads nothing heavy; the Space bundle's requirements install that wheel."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, free_port, served

SPACE = "testorg/divsft-explorer"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True, capture_output=True, timeout=600)
    [built] = out.glob("hf_divsft-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed alone (its dependencies come from this environment), away from the checkout."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=600)
    return target


def installed(site: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """The wheel's own `divsft` console script, run from a folder outside the checkout."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([str(site / "bin" / "divsft"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=900, check=False)


def test_the_wheel_carries_the_card_template_and_the_recipes(wheel, site, tmp_path):
    from zipfile import ZipFile

    names = set(ZipFile(wheel).namelist())
    assert {"hf_divsft/dataset_cards/subsets.md.j2", "hf_divsft/recipes/smollm2-135m/sft/config_lora.yaml",
            "hf_divsft/recipes/accelerate_configs/cpu.yaml",
            "hf_divsft/measurements/self_bleu/self_bleu.py"} <= names
    where = subprocess.run([sys.executable, "-c",
                            "import hf_divsft; print(hf_divsft.__file__, hf_divsft.__version__)"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(site)}, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(site) and where[1] in wheel.name


def test_recipes_list_and_copy_from_the_installed_wheel(site, tmp_path):
    listed = installed(site, "recipes", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    recipes = listed.stdout.split()
    assert "smollm2-135m/sft/config_full.yaml" in recipes and "accelerate_configs/fsdp.yaml" in recipes
    copied = installed(site, "recipes", "copy", tmp_path / "my-recipes", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    for name in recipes:
        assert filecmp.cmp(tmp_path / "my-recipes" / name, REPO / "recipes" / name, shallow=False), name
    again = installed(site, "recipes", "copy", tmp_path / "my-recipes", cwd=tmp_path)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert installed(site, "recipes", "copy", tmp_path / "my-recipes", "--overwrite",
                     cwd=tmp_path).returncode == 0


def test_the_installed_wheel_builds_and_publishes_with_its_card(site, pool_file, tmp_path):
    out, hub = tmp_path / "build", tmp_path / "hub.git"
    built = installed(site, "build", "--pool", pool_file, "--strategy", "response-micro", "--size", 100,
                      "--levels", "0,100", "--band", "10,100", "--no-metrics", "--out", out, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    published = installed(site, "publish", out, "--repo", "testorg/wheel-subsets", "--version", "1.0.0",
                          "--hub-dir", hub, cwd=tmp_path)
    assert published.returncode == 0, published.stderr[-2000:]
    card = subprocess.run(["git", f"--git-dir={hub}", "show", "v1.0.0:README.md"], capture_output=True,
                          text=True, check=True).stdout
    assert 'load_dataset("testorg/wheel-subsets", "response_micro_d100", revision="v1.0.0"' in card


def test_importing_the_package_and_the_cli_loads_no_heavy_library(site, tmp_path):
    probe = ("import sys, hf_divsft, hf_divsft.cli; "
             "print(' '.join(m for m in ('datasets', 'torch', 'transformers', 'sklearn', 'pandas', 'scipy') "
             "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site)}, check=True).stdout.strip()
    assert loaded == ""


def test_the_space_bundle_requirements_install_the_wheel_from_the_space_repo(tmp_path):
    """A local HTTP server stands in for huggingface.co's `resolve` URL (HF_ENDPOINT points at it)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    out = tmp_path / "space"
    env = {**os.environ, "HF_ENDPOINT": endpoint}
    made = subprocess.run([sys.executable, str(REPO / "spaces" / "divsft-explorer" / "bundle.py"),
                           "--space", SPACE, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert made.returncode == 0, made.stderr[-2000:]
    assert {p.name for p in out.iterdir()} >= {"app.py", "README.md", "requirements.txt"}
    requirement = out.joinpath("requirements.txt").read_text().splitlines()[-1]
    assert requirement.startswith(f"hf-divsft[space] @ {endpoint}/spaces/{SPACE}/resolve/main/hf_divsft-")
    root = tmp_path / "www"
    (root / "spaces" / SPACE / "resolve").mkdir(parents=True)
    (root / "spaces" / SPACE / "resolve" / "main").symlink_to(out)
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    with served(server, f"{endpoint}/", tmp_path / "http.log", timeout=30):
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                              "--report", str(tmp_path / "report.json"), "-r", str(out / "requirements.txt")],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert "Would install hf-divsft-" in pip.stdout
