#!/usr/bin/env bash
# The journal loop, ml-connector (release) vs the plain Python peer, back to back in one run:
# N records, pages of 500, one destination per record (round robin over DESTINATIONS), a
# counting sink, a new SQLite file (WAL, synchronous=NORMAL) in a temporary directory each.
# Prints both figures (records/s, wall clock) and their ratio, and the same per CPU-second
# (user + sys, all threads), which is steadier than wall time on a shared machine.
#
#   benches/compare.sh [N=100000] [DESTINATIONS=1]
#
# The Rust side is `cargo run --release -p ml-benches --example journal_loop`; the Python
# side is benches/peers/python_peer.py on the system python3 (standard library only;
# PYTHON=... picks another). ML_BENCH_ROUNDS=2 alternates the two twice and compares the
# best of each. ML_BENCH_PEER_ARGS=--minimal runs the peer's bare loop (no attempt rows, no
# record read per delivery: less work than ours, a stricter baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
dests="${2:-1}"
rounds="${ML_BENCH_ROUNDS:-1}"
python="${PYTHON:-python3}"
read -r -a peer_args <<<"${ML_BENCH_PEER_ARGS:-}"

cargo build -q --release -p ml-benches --example journal_loop
rust_bin="${CARGO_TARGET_DIR:-target}/release/examples/journal_loop"

cpu_file="$(mktemp)"
trap 'rm -f "$cpu_file"' EXIT
# Runs "$@", prints its output, and leaves "<records/s> <cpu seconds>" in $result.
measure() {
  local out cpu rate
  if [ -x /usr/bin/time ]; then
    out="$(/usr/bin/time -f '%U %S' -o "$cpu_file" "$@")"
    cpu="$(awk '{ print $1 + $2 }' "$cpu_file")"
  else
    out="$("$@")"
    cpu=0
  fi
  echo "$out"
  rate="$(sed -n 's/.* = \([0-9]*\) records\/s.*/\1/p' <<<"$out")"
  result="$rate $cpu"
}

best_rust=0 best_python=0 rust_cpu=0 python_cpu=0
for _ in $(seq "$rounds"); do
  measure "$rust_bin" "$n" "$dests"
  read -r rate cpu <<<"$result"
  if (( rate > best_rust )); then best_rust=$rate rust_cpu=$cpu; fi
  measure "$python" benches/peers/python_peer.py "$n" --destinations "$dests" "${peer_args[@]}"
  read -r rate cpu <<<"$result"
  if (( rate > best_python )); then best_python=$rate python_cpu=$cpu; fi
done
awk -v r="$best_rust" -v p="$best_python" -v rc="$rust_cpu" -v pc="$python_cpu" \
    -v n="$n" -v d="$dests" 'BEGIN {
  printf "journal loop, %d records, %d destination(s): rust %d records/s, python %d records/s, ratio rust/python = %.2fx\n", n, d, r, p, r / p
  if (rc > 0 && pc > 0)
    printf "per CPU-second (user+sys): rust %.0f, python %.0f records/cpu-s (%.1f s vs %.1f s CPU), ratio = %.2fx\n", n / rc, n / pc, rc, pc, pc / rc
}'
