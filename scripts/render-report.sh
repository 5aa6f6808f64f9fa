#!/usr/bin/env bash
# Renders a tmc-sim HTML report to a PNG with headless Chromium, to check that it looks right.
#
#   scripts/render-report.sh [REPORT.html] [OUT.png]
#
# Defaults: target/tmc-sim-report.html (written by `cargo run --release -p tmc-sim`) and
# target/tmc-sim-report.png. Installs Chromium with apt-get when it is missing (Debian/Ubuntu, as
# root or with sudo). The report is self-contained, so the browser is kept off the network.
set -euo pipefail
cd "$(dirname "$0")/.."

report="${1:-target/tmc-sim-report.html}"
out="${2:-target/tmc-sim-report.png}"
width="${WIDTH:-1400}"
height="${HEIGHT:-2400}"

if [[ ! -f "$report" ]]; then
  echo "no report at $report; write one with: cargo run --release -p tmc-sim -- run SCENARIO.yaml --report $report" >&2
  exit 2
fi

browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then
    browser="$candidate"
    break
  fi
done
if [[ -z "$browser" ]]; then
  echo "installing chromium (apt-get install -y chromium)..." >&2
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  browser="chromium"
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
abs_report="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
mkdir -p "$(dirname "$out")"
abs_out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --no-first-run --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --window-size="$width,$height" \
  --screenshot="$abs_out" "file://$abs_report" >/dev/null 2>&1

if [[ ! -s "$abs_out" ]]; then
  echo "chromium did not write $abs_out" >&2
  exit 1
fi
echo "screenshot of $report written to $out"
