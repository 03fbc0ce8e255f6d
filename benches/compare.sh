#!/usr/bin/env bash
# The journal loop, ml-connector (release) vs the plain Python peer, back to back in one run:
# N records, pages of 500, one destination per record, a counting sink, a new SQLite file
# (WAL, synchronous=NORMAL) in a temporary directory each. Prints both figures and the ratio.
#
#   benches/compare.sh [N=100000] [DESTINATIONS=1]
#
# The Rust side is `cargo run --release -p ml-benches --example journal_loop`; the Python
# side is benches/peers/python_peer.py on the system python3 (standard library only).
# Set ML_BENCH_ROUNDS=2 to alternate the two twice (the best of each is compared).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
dests="${2:-1}"
rounds="${ML_BENCH_ROUNDS:-1}"
python="${PYTHON:-python3}"

cargo build -q --release -p ml-benches --example journal_loop
target_dir="${CARGO_TARGET_DIR:-target}"
rust_bin="$target_dir/release/examples/journal_loop"

best_rust=0
best_python=0
for _ in $(seq "$rounds"); do
  line="$("$rust_bin" "$n" "$dests")"
  echo "$line"
  rust="$(sed -n 's/.* = \([0-9]*\) records\/s.*/\1/p' <<<"$line")"
  line="$("$python" benches/peers/python_peer.py "$n" --destinations "$dests")"
  echo "$line"
  py="$(sed -n 's/.* = \([0-9]*\) records\/s.*/\1/p' <<<"$line")"
  (( rust > best_rust )) && best_rust=$rust
  (( py > best_python )) && best_python=$py
done
awk -v r="$best_rust" -v p="$best_python" -v n="$n" -v d="$dests" 'BEGIN {
  printf "journal loop, %d records, %d destination(s): rust %d records/s, python %d records/s, ratio rust/python = %.2fx\n", n, d, r, p, r / p
}'
