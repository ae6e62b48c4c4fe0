"""Mistakes in the binaries' flags that need no TensorFlow are reported before it is
imported (seconds the user would wait for a one-line error): each binary runs in a fresh
process that says afterwards whether `tensorflow` was imported."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.training import ROOT

# Runs genesis_tf.<binary>'s entry point on the given flags, then prints one JSON line.
PROBE = """
import importlib, json, sys
module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
try:
    importlib.import_module(module).run()
    code = 0
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"exit": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def _probe(module, *args):
    env = {k: v for k, v in os.environ.items() if k != "GENESIS_TF_INCEPTION"}
    result = subprocess.run([sys.executable, "-c", PROBE, module, *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr.strip()


def _case(name, tmp_path):
    """(module, flags, the error's words) of each case."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    run = tmp_path / "run"  # only what the check reads: the model.json a run writes
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"class_name": "Genesis",
                                                "config": {"num_slots": 3}}))
    return {
        "gin_file": ("genesis_tf.train", ["--gin_file=nope.gin", f"--model_dir={run}"],
                     "gin file 'nope.gin' not found"),
        "model_dir_is_a_file": ("genesis_tf.train", ["--gin_file=smoke.gin",
                                                     f"--model_dir={a_file}"],
                                f"--model_dir={a_file} is a file"),
        "no_inception": ("genesis_tf.evaluate", [f"--model_dir={run}", "--metrics=ari,fid"],
                         "Inception graph for FID not found"),
        "slot": ("genesis_tf.visualise", [f"--model_dir={run}", "--what=traversal",
                                          "--slot=4", f"--out={tmp_path / 'x.png'}"],
                 "--slot=4: the model has 3 slot(s), numbered 1..3"),
    }[name]


@pytest.mark.parametrize("name", ["gin_file", "model_dir_is_a_file", "no_inception", "slot"])
def test_flag_mistake_is_reported_before_tensorflow_is_imported(name, tmp_path):
    module, args, words = _case(name, tmp_path)
    outcome, stderr = _probe(module, *args)
    assert outcome["exit"] == 2, stderr
    assert stderr.startswith("error: ") and words in stderr, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert not outcome["tensorflow"]
    assert not (tmp_path / "x.png").exists()
