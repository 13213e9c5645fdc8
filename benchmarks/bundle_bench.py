"""Bundle benchmark: size of the PyInstaller bundles and cold start of the one-dir app.

Builds ``qtchat.spec`` twice if needed (one-dir and one-file, into ``build/bundle-bench/``;
a build is redone when a source file is newer than it), then reports

- **one-dir size**: the bytes of every file in the ``qtchat/`` folder (symbolic
  links not counted), budget 130 MB;
- **one-file size**: the single executable, budget 55 MB;
- **cold start of the one-dir**: launch to start dialog shown, budget 1.0 s. Each run
  first evicts the bundle's files from the page cache (``posix_fadvise(DONTNEED)``;
  the system's own libraries stay cached, as they are on a desktop that is in use),
  then starts ``qtchat --startup-probe`` and times from just before the launch to the
  app's ``qtchat: start dialog shown after N ms`` line on its stdout. The app's own N
  (its process age when the dialog showed) is reported next to it. Warm starts (files
  cached) and the one-file's start (which unpacks itself first) are shown for
  comparison.

The start dialog starts LAN discovery (mDNS), so on Linux the whole run goes into a new,
empty network namespace (``unshare --net``, loopback only): the benchmark sends nothing
to the network and its figures do not depend on it. ``--no-netns`` turns that off.

Run from the repository root, after ``make dist`` or ``pip install -e '.[dist]'``:

    .venv/bin/python benchmarks/bundle_bench.py                 # build if needed, measure
    .venv/bin/python benchmarks/bundle_bench.py --runs 10 --check --json benchmarks/bundle.json

With ``--check`` the exit status is 1 when a figure is over its budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("bundle_bench")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "qtchat.spec"
SOURCES = (SPEC, ROOT / "pyproject.toml", ROOT / "qtchat", ROOT / "resources")
EXE_NAME = "qtchat.exe" if sys.platform == "win32" else "qtchat"
PROBE_LINE = "qtchat: start dialog shown after "
NETNS_MARK = "QTCHAT_BUNDLE_BENCH_NETNS"

MB = 1_000_000
MIB = 1 << 20
BUDGET_ONEDIR_BYTES = 130 * MB
BUDGET_ONEFILE_BYTES = 55 * MB
BUDGET_COLD_START_S = 1.0


@dataclass
class Launch:
    """One start of the app: wall time to the probe line, and the app's own figure."""

    seconds: float
    app_ms: float | None


@dataclass
class Report:
    """Everything measured, as written by --json."""

    machine: dict[str, str]
    onedir_bytes: int
    onefile_bytes: int
    onedir_files: int
    cold: list[Launch] = field(default_factory=list)
    warm: list[Launch] = field(default_factory=list)
    onefile: list[Launch] = field(default_factory=list)
    network_isolated: bool = False
    cache_evicted: bool = False


# --- building -----------------------------------------------------------------------------


def _newest_source_mtime() -> float:
    newest = 0.0
    for source in SOURCES:
        paths = [source] if source.is_file() else source.rglob("*")
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                newest = max(newest, path.stat().st_mtime)
    return newest


def build(out: Path, *, onefile: bool, force: bool) -> Path:
    """Build the spec into ``out`` unless an up-to-date build is there; return the exe."""
    dist = out / "dist"
    exe = dist / EXE_NAME if onefile else dist / "qtchat" / EXE_NAME
    if not force and exe.is_file() and exe.stat().st_mtime >= _newest_source_mtime():
        log.info("%s build is up to date: %s", "one-file" if onefile else "one-dir", exe)
        return exe
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        sys.exit("bundle_bench: PyInstaller is missing; install the 'dist' extra first")
    env = dict(os.environ, QTCHAT_ONEFILE="1" if onefile else "0")
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level=WARN",
        "--distpath", str(dist), "--workpath", str(out / "work"), str(SPEC),
    ]  # fmt: skip
    log.info("building %s: %s", "one-file" if onefile else "one-dir", " ".join(command))
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    log.info("built in %.0f s", time.perf_counter() - started)
    return exe


# --- measuring ----------------------------------------------------------------------------


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes and count of the regular files under ``folder`` (symbolic links not counted)."""
    total = count = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            count += 1
    return total, count


def evict(paths: list[Path]) -> bool:
    """Drop the files' pages from the page cache; False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        if path.is_symlink() or not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def launch(exe: Path, env: dict[str, str], timeout: float) -> Launch:
    """Start ``exe --startup-probe``; time launch to the probe line; wait for exit 0."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(exe), "--startup-probe"], stdout=subprocess.PIPE, stderr=stderr, env=env,
            text=True,
        )  # fmt: skip
        assert process.stdout is not None
        seconds = app_ms = None
        deadline = started + timeout
        try:
            for line in process.stdout:
                if line.startswith(PROBE_LINE):
                    seconds = time.perf_counter() - started
                    app_ms = float(line[len(PROBE_LINE) :].split()[0])
                    break
                if time.perf_counter() > deadline:
                    break
            code = process.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        if seconds is None or code != 0:
            stderr.seek(0)
            raise RuntimeError(
                f"{exe} --startup-probe: exit {code}, no start line; stderr:\n{stderr.read()}"
            )
    return Launch(seconds=seconds, app_ms=app_ms)


def measure(args: argparse.Namespace) -> Report:
    out = Path(args.out)
    onedir_exe = build(out / "onedir", onefile=False, force=args.rebuild)
    onefile_exe = build(out / "onefile", onefile=True, force=args.rebuild)
    onedir_bytes, onedir_files = folder_size(onedir_exe.parent)
    report = Report(
        machine={
            "system": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(),
            "cpus": str(os.cpu_count()),
            "python": platform.python_version(),
        },
        onedir_bytes=onedir_bytes,
        onefile_bytes=onefile_exe.stat().st_size,
        onedir_files=onedir_files,
        network_isolated=os.environ.get(NETNS_MARK) == "1",
    )
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", args.platform)
    # A fresh profile: every start is a first start, and the user's settings stay alone.
    profile = Path(tempfile.mkdtemp(prefix="qtchat-bench-profile-"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env[name] = str(profile / name.lower())
    onedir_files_list = list(onedir_exe.parent.rglob("*"))
    launch(onedir_exe, env, args.timeout)  # discard: first-ever start writes caches
    for _ in range(args.runs):
        report.cache_evicted = evict(onedir_files_list)
        report.cold.append(launch(onedir_exe, env, args.timeout))
        report.warm.append(launch(onedir_exe, env, args.timeout))
    for _ in range(args.runs):
        report.onefile.append(launch(onefile_exe, env, args.timeout))
    shutil.rmtree(profile, ignore_errors=True)
    return report


# --- reporting ----------------------------------------------------------------------------


def _stats(launches: list[Launch]) -> str:
    seconds = [one.seconds for one in launches]
    app = [one.app_ms for one in launches if one.app_ms is not None]
    app_part = f" (app's own: median {statistics.median(app):.0f} ms)" if app else ""
    return f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s{app_part}"


def verdicts(report: Report) -> list[tuple[str, str, bool]]:
    """(figure, budget, within budget) for each budgeted figure."""
    cold = statistics.median(one.seconds for one in report.cold)
    return [
        (
            f"one-dir size {report.onedir_bytes / MB:.1f} MB ({report.onedir_bytes / MIB:.1f} "
            f"MiB, {report.onedir_files} files)",
            "≤ 130 MB",
            report.onedir_bytes <= BUDGET_ONEDIR_BYTES,
        ),
        (
            f"one-file size {report.onefile_bytes / MB:.1f} MB "
            f"({report.onefile_bytes / MIB:.1f} MiB)",
            "≤ 55 MB",
            report.onefile_bytes <= BUDGET_ONEFILE_BYTES,
        ),
        (f"one-dir cold start, median {cold:.2f} s", "≤ 1.0 s", cold <= BUDGET_COLD_START_S),
    ]


def print_report(report: Report, runs: int) -> None:
    machine = ", ".join(f"{key} {value}" for key, value in report.machine.items())
    print(f"bundle_bench on {machine}")
    notes = []
    if report.network_isolated:
        notes.append("in an empty network namespace")
    notes.append(
        "bundle files evicted from the page cache before each cold start"
        if report.cache_evicted
        else "page cache NOT evicted (no posix_fadvise here): cold = warm"
    )
    print(f"  ({'; '.join(notes)}; {runs} runs each)")
    for figure, budget, ok in verdicts(report):
        print(f"  {figure:<58} budget {budget:<9} {'ok' if ok else 'OVER'}")
    print(f"  launch to start dialog, one-dir cold: {_stats(report.cold)}")
    print(f"  launch to start dialog, one-dir warm: {_stats(report.warm)}")
    print(f"  launch to start dialog, one-file:     {_stats(report.onefile)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per figure (default 5)")
    parser.add_argument("--out", default=str(ROOT / "build" / "bundle-bench"),
                        help="where to build (default build/bundle-bench)")  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="build even if up to date")
    parser.add_argument("--platform", default="offscreen",
                        help="QT_QPA_PLATFORM when it is not set (default offscreen)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per start")
    parser.add_argument("--no-netns", action="store_true",
                        help="do not move into an empty network namespace (Linux)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a figure is over its budget")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="bundle_bench: %(message)s")  # fmt: skip

    if sys.platform.startswith("linux") and not args.no_netns and NETNS_MARK not in os.environ:
        unshare = shutil.which("unshare")
        if unshare and subprocess.run([unshare, "--net", "true"], check=False).returncode == 0:
            os.environ[NETNS_MARK] = "1"
            command = [unshare, "--net", sys.executable, str(Path(__file__).resolve())]
            os.execv(unshare, [*command, *(argv if argv is not None else sys.argv[1:])])
        log.warning("cannot make a network namespace; the start dialog's discovery runs")
    if os.environ.get(NETNS_MARK) == "1" and shutil.which("ip"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)

    report = measure(args)
    print_report(report, args.runs)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n", "utf-8")
    if args.check and not all(ok for _figure, _budget, ok in verdicts(report)):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
