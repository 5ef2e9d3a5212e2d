"""The ``sdaie`` command: sub-commands dispatch, and the light ones start without torch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sdaie.cli import COMMANDS, main

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"

# Runs ``sdaie ARGS`` in a fresh interpreter and prints whether torch got imported.
PROBE = ("import sys; from sdaie.cli import main; code = main(sys.argv[1:]); "
         "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")


def _probe(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.mark.parametrize("args", [
    ["--help"],
    ["exif", str(PHOTOS / "NIKON_E995_03.jpg"), "--quiet"],
    ["index", str(PHOTOS), "--out", "{tmp}/index", "--workers", "1", "--no-progress"],
    ["synth", "{tmp}/world", "--photos", "2", "--gen-images", "1", "--bc-train", "0",
     "--bc-val", "0", "--size", "64", "--workers", "1", "--quiet"],
], ids=["help", "exif", "index", "synth"])
def test_light_commands_do_not_import_torch(args, tmp_path):
    assert _probe(*(a.format(tmp=tmp_path) for a in args)) == "NO-TORCH 0"


def test_the_probe_sees_torch_when_a_command_loads_it(tmp_path):
    """Without this, the check above would also pass if the probe could not see torch."""
    assert _probe("convert", str(tmp_path / "absent.pth"), str(tmp_path / "out.pt")) == "TORCH 2"


def test_every_command_module_exists():
    for name, (module, _) in COMMANDS.items():
        assert importlib.util.find_spec(module) is not None, name


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


# ---------------------------------------------------------------------------------------------
# Help texts: the command's own name, examples that name real keys, no reST markup
# ---------------------------------------------------------------------------------------------


def _help(command: str, capsys) -> str:
    import pytest

    from sdaie.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_every_help_text_is_plain_and_names_its_command(capsys):
    import re

    from sdaie.cli import COMMANDS

    for command in COMMANDS:
        text = _help(command, capsys)
        assert text.startswith(f"usage: sdaie {command}"), (command, text[:80])
        assert "``" not in text and not re.search(r":(func|mod|class|data|meth):", text), command


def test_stage_help_examples_are_keys_of_that_stage(capsys):
    import shlex

    from sdaie.config import load_config
    from sdaie.stages.common import STAGES

    sections = {"backbone_train": {"data", "run", "pretext"}, "oc_main": {"oneclass", "run"},
                "bc_train": {"binary", "run"}, "bc_eval": {"eval", "run"}}
    for name, stage in STAGES.items():
        overrides = shlex.split(stage.example)
        load_config(None, overrides)  # every example key exists and its value is valid
        assert {o.split(".", 1)[0] for o in overrides} <= sections[name], (name, overrides)
