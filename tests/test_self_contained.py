"""A clone of the repository is self-contained: no file points outside it (a user has no ../shared)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("../shared", "/work/")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return [REPO / name for name in listed
            if not name.startswith(("tests/fixtures/", "node_modules/")) and name != "package-lock.json"]


def test_no_file_refers_outside_the_repository() -> None:
    offenders = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                      if any(marker in line for marker in OUTSIDE)]
    assert offenders == [], f"references outside the repository: {offenders}"


def test_dev_tools_are_not_deployed() -> None:
    ignored = (REPO / ".funcignore").read_text().split()
    for folder in ("devtools", "tests", "bench", "infra", "docs", "scripts"):
        assert folder in ignored, f".funcignore must exclude {folder}/"
    assert not (REPO / "shared" / "emulator").exists()
    deployed = [p for p in (REPO / "shared").rglob("*.py") if "devtools" in p.read_text(encoding="utf-8")]
    lazy_only = [p for p in deployed if p.name != "cli.py"]
    assert lazy_only == [], f"deployed modules import dev tools: {lazy_only}"


def test_the_deployed_package_indexes_without_dev_tools(tmp_path: Path) -> None:
    """Copy only what .funcignore lets through, then index the app there: nothing may need devtools or trustme."""
    import shutil
    import sys

    ignored = set((REPO / ".funcignore").read_text().split())
    for entry in REPO.iterdir():
        if entry.name in ignored or entry.name.startswith(".") or entry.name in {"node_modules"}:
            continue
        if entry.is_dir():
            shutil.copytree(entry, tmp_path / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, tmp_path / entry.name)
    assert not (tmp_path / "devtools").exists()
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'devtools', 'trustme', 'tests'}:\n"
        "            raise ImportError('not deployed: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import function_app\n"
        "names = sorted(f.get_function_name() for f in function_app.app.get_functions())\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) >= 8
    cli = subprocess.run([sys.executable, "-m", "shared", "demo"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}, timeout=120, check=False)
    assert cli.returncode == 2, cli.stderr[-2000:]
    assert "development tool" in cli.stderr
