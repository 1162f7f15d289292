"""Removing an episode folder that a process left by a killed run is still writing into
(tests/test_crash_safety.py saw `gc` fail with "Directory not empty" under load)."""

import errno
import subprocess
import sys
import time

import pytest

from learnagent.agent.worktree import remove_folder

WRITER = r"""
import os, sys, time
folder, until = sys.argv[1], time.time() + float(sys.argv[2])
n = 0
while time.time() < until:
    try:
        with open(os.path.join(folder, f"f{n}.pyc"), "w") as fh:
            fh.write("x")
    except FileNotFoundError:
        break  # the folder is gone: as a test run whose cwd was removed
    n += 1
"""


def test_a_folder_still_being_written_is_removed_once_the_writer_stops(tmp_path):
    folder = tmp_path / "episode"
    cache = folder / "pkg" / "__pycache__"
    cache.mkdir(parents=True)
    for i in range(300):
        (folder / "pkg" / f"m{i}.py").write_text("pass\n")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(cache), "0.6"])
    time.sleep(0.15)  # the writer is at it
    remove_folder(folder)
    writer.wait(timeout=30)
    assert not folder.exists()


def test_a_folder_written_for_longer_than_the_retries_raises_and_keeps_what_it_could_not_remove(tmp_path):
    folder = tmp_path / "episode"
    cache = folder / "__pycache__"
    cache.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(cache), "6"])
    time.sleep(0.15)
    try:
        with pytest.raises(OSError) as raised:
            remove_folder(folder)
        assert raised.value.errno == errno.ENOTEMPTY  # the caller (gc) reports it; a later gc retries
    finally:
        writer.kill()
        writer.wait(timeout=30)
    remove_folder(folder)  # the writer gone, the folder goes
    assert not folder.exists()
