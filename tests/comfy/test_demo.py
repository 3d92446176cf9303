"""The README's main job (`make demo` = dev/demo.py) runs end to end: a real server, the synthetic best-of-N
example, the ranking read from the page's score message, the files it names on disk."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.comfy
def test_demo_ranks_the_clean_clip_first(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "dev" / "demo.py"), "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = re.findall(r"#(\d) clip \d \((\w+)\): total ([0-9.]+)", proc.stdout)
    assert [r[0] for r in ranks] == ["1", "2", "3", "4"]
    assert ranks[0][1] == "clean"  # the defect-free candidate wins on the flow metrics
    totals = [float(r[2]) for r in ranks]
    assert totals == sorted(totals, reverse=True)
    files = re.findall(r": (/\S+\.(?:png|webp|json))$", proc.stdout, flags=re.M)
    assert len(files) >= 4 and all(Path(f).is_file() for f in files)
