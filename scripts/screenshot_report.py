"""Screenshot a leaderboard HTML page in headless Chromium (a visual check that it renders offline).

Usage: python scripts/screenshot_report.py results/synthetic/leaderboard.html [out.png] [--size 1400,2400]

Needs a Chromium binary (``apt-get install -y chromium``); the page must render with networking
off, since the leaderboard embeds its CSS and plots.  Exits 2 with a clear message when no
browser is installed.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, size: str = "1400,2400", timeout: float = 120.0) -> Path:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}); apt-get install -y chromium")
    if not page.is_file():
        raise FileNotFoundError(f"{page} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--hide-scrollbars", f"--screenshot={out.resolve()}", f"--window-size={size}",
               page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path, help="leaderboard.html to render")
    p.add_argument("out", type=Path, nargs="?", help="PNG to write (default: <page>.png next to the page)")
    p.add_argument("--size", default="1400,2400", help="window size W,H in pixels")
    args = p.parse_args(argv)
    out = args.out or args.page.with_suffix(".png")
    try:
        print(screenshot(args.page, out, args.size))
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
