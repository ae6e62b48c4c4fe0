"""The foundation: the package installs, ships its data files, and CI runs the README's command."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_packages_import():
    import genesis_tf
    import tfds_builders

    assert re.fullmatch(r"\d+\.\d+\.\d+", genesis_tf.__version__)
    assert pathlib.Path(tfds_builders.__file__).parent == ROOT / "tfds_builders"


def _readme_test_command():
    """The README's test command: the line in its fenced blocks that runs the test suite."""
    commands = re.findall(r"^\s*(make \S+)\s*$", (ROOT / "README.md").read_text(), re.M)
    assert commands, "README.md must give its commands as `make ...` lines"
    tests = [c for c in commands if "test" in c]
    assert len(tests) == 1, f"README.md must give exactly one test command, found {tests}"
    return tests[0], commands


def test_readme_gives_exactly_two_commands():
    test_command, commands = _readme_test_command()
    assert sorted(set(commands)) == sorted(["make demo", test_command])


def test_ci_runs_exactly_the_readme_test_command():
    test_command, _ = _readme_test_command()
    ci = (ROOT / ".ci" / "run").read_text()
    code = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    runs = [line for line in code if line.startswith("make")]
    assert runs == [test_command]


def test_ci_treats_no_tests_collected_as_failure():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'"\$rc" -eq 5', ci) and "exit 1" in ci


def test_makefile_test_target_runs_pytest():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.M)
    assert target and "-m pytest" in target.group(1)


def _make_rule(makefile, target):
    """(prerequisites, recipe) of a Makefile rule whose target is the literal ``target``."""
    rule = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, f"no rule for {target} in the Makefile"
    return rule.group(1).split("|")[0].split(), rule.group(2)


def test_make_demo_installs_the_package_and_make_test_the_test_extra():
    makefile = (ROOT / "Makefile").read_text()
    (demo_stamp,), _ = _make_rule(makefile, "demo")
    (test_stamp,), test_recipe = _make_rule(makefile, "test")
    assert demo_stamp != test_stamp
    _, demo_install = _make_rule(makefile, demo_stamp)
    _, test_install = _make_rule(makefile, test_stamp)
    assert "pip install --quiet -e .\n" in demo_install and "[test]" not in demo_install
    assert "-e '.[test]'" in test_install
    assert "-n 2 --dist loadfile" in test_recipe
    assert re.search(r'"pytest-xdist[^"]*"', (ROOT / "setup.py").read_text())


def test_slow_marker_is_registered():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"slow:', pyproject)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip install .` would install, built from a copy of the tree (so the build
    writes no build/ or egg-info into the checkout and sees no stale build output)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".ruff_cache", "runs", "demo_output", "tensorflow_datasets"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        check=True,
        cwd=work,
    )
    (built,) = (work / "dist").glob("genesis_tf-*.whl")
    return built


@pytest.mark.slow
def test_wheel_ships_builders_with_their_data(wheel):
    """`pip install .` must carry each builder's checksums.tsv and dummy_data/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "genesis_tf/__init__.py" in names
    assert "tfds_builders/__init__.py" in names
    data_files = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tfds_builders").rglob("*")
        if p.is_file() and p.suffix != ".pyc" and "__pycache__" not in p.parts
    ]
    missing = sorted(set(data_files) - names)
    assert not missing, f"files under tfds_builders/ missing from the wheel: {missing[:10]}"


@pytest.mark.slow
def test_wheel_ships_the_gin_configs(wheel):
    """The top-level gin_configs/ is installed as genesis_tf/gin_configs/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT / "gin_configs").as_posix()
                     for p in (ROOT / "gin_configs").rglob("*.gin"))
    assert configs
    missing = [c for c in configs if f"genesis_tf/gin_configs/{c}" not in names]
    assert not missing, f"gin configs missing from the wheel: {missing}"


@pytest.mark.slow
def test_wheel_ships_the_demo_model(wheel):
    """genesis_tf.demo starts from genesis_tf/demo_model/weights.npz when it is installed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("weights.npz", "README.md"):
        assert f"genesis_tf/demo_model/{name}" in names


@pytest.mark.slow
def test_wheel_declares_every_binary(wheel):
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    scripts = archive.read(entry_points).decode()
    for line in ("genesis-train = genesis_tf.train:run",
                 "genesis-export = genesis_tf.export.__main__:run",
                 "genesis-evaluate = genesis_tf.evaluate:run",
                 "genesis-build-dataset = genesis_tf.tools.build_dataset:run",
                 "genesis-convert-reference = genesis_tf.tools.convert_reference:run",
                 "genesis-write-weights = genesis_tf.tools.write_weights:run"):
        assert line in scripts, scripts
    metadata = archive.read(next(n for n in archive.namelist()
                                 if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: serving" in metadata


# Runs in a fresh interpreter whose only genesis_tf is the installed copy.
_INSTALLED_CHECK = textwrap.dedent("""
    import json, logging, os
    logging.basicConfig(level=logging.DEBUG)  # shows gin's include lookups, if any
    import gin
    import genesis_tf
    from genesis_tf import demo
    from genesis_tf.export import export_model
    from genesis_tf.training import config

    out = {"package": genesis_tf.__file__, "export": export_model.__module__,
           "configs": config.gin_configs_dir(),
           "demo_gin": os.path.isfile(os.path.join(config.gin_configs_dir(), demo.DEMO_GIN))}
    for name in ["gqn.gin", "multi_dsprites.gin", "demo.gin", "gin_configs/gqn.gin"]:
        gin.clear_config()
        config.parse([name])
        out[name] = [gin.query_parameter("%NUM_SLOTS"),
                     gin.query_parameter("train.batch_size")]
    try:
        config.parse(["nope.gin"])
    except FileNotFoundError as error:
        out["missing"] = str(error)
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
def test_installed_wheel_finds_its_configs_from_any_directory(wheel, tmp_path):
    """`pip install .` outside the checkout: configs by name, includes, the demo's config."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", _INSTALLED_CHECK], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert pathlib.Path(out["package"]).is_relative_to(site), out["package"]
    assert pathlib.Path(out["configs"]) == site / "genesis_tf" / "gin_configs"
    assert out["demo_gin"]
    assert out["export"] == "genesis_tf.export.saved_model"
    assert out["gqn.gin"] == out["gin_configs/gqn.gin"] == [7, 32]
    assert out["multi_dsprites.gin"] == [5, 32]
    assert out["demo.gin"][0] == 4
    assert "nope.gin" in out["missing"] and "gqn.gin" in out["missing"]
    assert "Path not found" not in result.stderr
    assert "system_path_file_exists" not in result.stderr


def test_lint_passes():
    """The code passes the project's ruff configuration (`make lint`)."""
    ruff = pathlib.Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is installed by the test extra; run `make test`")
    result = subprocess.run(
        [str(ruff), "check", "genesis_tf", "tfds_builders", "tests", "benchmarks", "setup.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
