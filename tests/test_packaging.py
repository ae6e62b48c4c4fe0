"""The foundation: the package installs, ships its data files, and CI runs the README's command."""
import pathlib
import re
import subprocess
import sys
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


def test_slow_marker_is_registered():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"slow:', pyproject)


@pytest.mark.slow
def test_wheel_ships_builders_with_their_data(tmp_path):
    """`pip install .` must carry each builder's checksums.tsv and dummy_data/."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("genesis_tf-*.whl")
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
