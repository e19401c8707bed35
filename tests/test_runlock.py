"""A stale Snakemake lock (left by kill -9) is cleared; a live run's lock is kept."""

from __future__ import annotations

import subprocess
import sys
import time

from galmet.runlock import clear_stale_lock, lock_files, main, snakemake_pids


def _lock(directory):
    locks = directory / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("results/summary.json\n")


def test_no_lock_is_nothing_to_do(tmp_path):
    assert clear_stale_lock(tmp_path) is False
    assert main([str(tmp_path)]) == 0


def test_stale_lock_is_removed(tmp_path, capsys):
    _lock(tmp_path)
    assert lock_files(tmp_path)
    assert main([str(tmp_path)]) == 0
    assert not lock_files(tmp_path)
    assert "stale Snakemake lock" in capsys.readouterr().err


def test_lock_of_a_live_snakemake_is_kept(tmp_path, capsys):
    _lock(tmp_path)
    fake = tmp_path / "bin" / "snakemake"  # stands for .venv/bin/snakemake: a Python script
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(60)\n")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    live = subprocess.Popen([sys.executable, str(fake), "--cores", "2"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10  # a loaded machine may take a moment to show the new process
        while live.pid not in snakemake_pids(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live.pid in snakemake_pids(tmp_path) and other.pid not in snakemake_pids(tmp_path)
        assert live.pid not in snakemake_pids(tmp_path / "bin")  # another directory's run
        assert clear_stale_lock(tmp_path) is None and lock_files(tmp_path)
        assert main([str(tmp_path)]) == 1
        assert "Snakemake is running" in capsys.readouterr().err
    finally:
        for p in (live, other):
            p.kill()
            p.wait()
    assert clear_stale_lock(tmp_path) is True
