#!/bin/sh
# Makes the README's screenshots from the demo workspace with `opsdeck snapshot`: builds
# opsdeck, copies the demo into a temporary workspace (nothing of yours is touched), runs the
# demo's fraud-model pipeline on version 1 of its rule table and again on version 2, and draws
# the panes into docs/screenshots/. Rerun it after a change to the dashboard.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="$PWD/target/release/opsdeck"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_DATA_HOME="$tmp/home/data" XDG_CONFIG_HOME="$tmp/home/config"
cp -r assets/demo "$tmp/ws"
od() { "$bin" --workspace "$tmp/ws" "$@"; }
od run fraud-model >/dev/null || true
od assets put fraud-rules assets/demo-history/fraud-rules.v2.json --pin \
    --reason "a stricter rule table" >/dev/null
od run fraud-model >/dev/null || true
mkdir -p docs/screenshots
at=2026-11-30T12:00:00Z
od snapshot --pane pipelines --select fraud-model --size 120x30 --at "$at" --format svg \
    -o docs/screenshots/pipelines.svg
od snapshot --pane compare --select 1,2 --size 120x20 --at "$at" --format svg \
    -o docs/screenshots/compare.svg
od snapshot --pane assets --select fraud-rules --size 120x24 --at "$at" --format svg \
    -o docs/screenshots/assets.svg
