#!/usr/bin/env bash
# WebSocket tunnels under load (issue #15): round trips through an upgraded connection. `ws-load`
# opens 32 tunnels and in each sends a 64-byte masked text message and waits for its echo from
# `ws-echo` before sending the next, checking every echo; it reports round trips per second and the
# p50/p99 latency of one. Rows: nginx proxying WebSockets (`proxy_pass` with the Upgrade and
# Connection headers set, the peer), Portcullis on an `auth = "none"` route, optionally a second
# Portcullis binary (a baseline, e.g. before a change) and the backend directly (the floor). The
# proxy under test runs on core 0; the client and the backend on core 1. Before measuring, each
# row passes `ws-load --check` (0 B–1 MiB messages, split and coalesced writes, close handshake).
# Interleaved repetitions; the table shows medians, ratios to nginx and the spread.
#
#   benches/load/websocket.sh            5 repetitions of 5 s per row (~2.5 minutes once built)
#   benches/load/websocket.sh --quick    2 repetitions of 3 s (~45 s once built)
#
#   PORTCULLIS_BIN=…           the Portcullis to measure (default: built here, target/release/portcullis)
#   PORTCULLIS_BASELINE_BIN=…  another Portcullis measured in the same run, e.g. before a change
#
# Installs nginx and libnginx-mod-http-lua (Debian; nginx.conf.in loads the module) when missing.
# Honours CARGO_TARGET_DIR. Writes benches/load/websocket-results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
mode="" duration=5 repetitions=5 tunnels=32 size=64
if [[ "${1:-}" == "--quick" ]]; then mode=" --quick" duration=3 repetitions=2; fi

say() { printf '== %s\n' "$*" >&2; }
if ! command -v nginx >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]]; then
  say "installing nginx and libnginx-mod-http-lua"
  apt-get update -q && apt-get install -y -q --no-install-recommends nginx-light libnginx-mod-http-lua
fi
target=${CARGO_TARGET_DIR:-$repo/target}
build=(-p portcullis-benches --bin ws-echo --bin ws-load)
[[ -n "${PORTCULLIS_BIN:-}" ]] || build+=(-p portcullis --bin portcullis)
say "building ${build[*]} (release)"
cargo build --release --locked "${build[@]}"
started=$SECONDS  # the time reported: from here (built) to the table
portcullis_bin=$(realpath "${PORTCULLIS_BIN:-$target/release/portcullis}")
baseline_bin=${PORTCULLIS_BASELINE_BIN:+$(realpath "$PORTCULLIS_BASELINE_BIN")}

work=$(mktemp -d /tmp/portcullis-websocket-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source benches/load/common.sh
backend_port=$(free_port) proxy_port=$(free_port) portcullis_port=$(free_port) idp_port=$(free_port)
baseline_port=$(free_port) baseline_idp_port=$(free_port)

taskset -c 1 "$target/release/ws-echo" "127.0.0.1:$backend_port" > "$work/ws-echo.log" 2>&1 &
pids+=($!)
# The upstream block's `keepalive` does not apply: nginx never pools an upgraded connection.
taskset -c 0 nginx -c "$(nginx_conf proxy "$proxy_port" 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";')" \
  -e "$work/nginx-proxy.error.log" &
pids+=($!)
start_portcullis() { # name, binary, port, idp port
  { portcullis_config "$3" "$4"; common_routes; } > "$work/$1.toml"
  taskset -c 0 "$2" run --config "$work/$1.toml" > "$work/$1.out" 2> "$work/$1.log" &
  pids+=($!)
}
start_portcullis portcullis "$portcullis_bin" "$portcullis_port" "$idp_port"

rows=(nginx)
declare -A address path label binary
address[nginx]=127.0.0.1:$proxy_port path[nginx]=/
label[nginx]='nginx `proxy_pass`, `Upgrade`/`Connection` set (the peer)'
if [[ -n "$baseline_bin" ]]; then
  start_portcullis baseline "$baseline_bin" "$baseline_port" "$baseline_idp_port"
  rows+=(baseline)
  address[baseline]=127.0.0.1:$baseline_port path[baseline]=/none binary[baseline]=$baseline_bin
  label[baseline]='Portcullis baseline, `auth = "none"`'
fi
rows+=(portcullis)
address[portcullis]=127.0.0.1:$portcullis_port path[portcullis]=/none binary[portcullis]=$portcullis_bin
label[portcullis]='Portcullis, `auth = "none"`'
rows+=(direct)
address[direct]=127.0.0.1:$backend_port path[direct]=/
label[direct]='backend directly (`ws-echo`, no proxy)'

# Ready when a plain GET comes back (ws-echo answers it 426 through every proxy).
for row in "${rows[@]}"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://${address[$row]}${path[$row]}" && continue 2; sleep 0.1; done
  echo "${address[$row]} does not answer; the logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1
done
for row in "${rows[@]}"; do
  say "checking the tunnel: $row"
  taskset -c 1 "$target/release/ws-load" --check --tunnels 8 "${address[$row]}" "${path[$row]}" >&2 \
    || { echo "row $row: the tunnel check failed; the logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
done

run_load() { # row, seconds, output file
  taskset -c 1 "$target/release/ws-load" --tunnels "$tunnels" --size "$size" --seconds "$2" \
    "${address[$1]}" "${path[$1]}" > "$3" \
    || { echo "row $1: ws-load failed; the logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
}
say "warming up"
for row in "${rows[@]}"; do run_load "$row" 1 "$work/warm-up.txt"; done
for rep in $(seq "$repetitions"); do
  for row in "${rows[@]}"; do
    say "repetition $rep of $repetitions, $row: ${address[$row]}${path[$row]}"
    run_load "$row" "$duration" "$work/load-$row-$rep.txt"
    cat "$work/load-$row-$rep.txt" >&2
  done
done
# A tunnel that ended badly shows in ws-echo's log or as Portcullis's "upgrade failed" warning.
if grep -q error "$work/ws-echo.log" || grep -q "upgrade failed" "$work"/{portcullis,baseline}.log 2>/dev/null; then
  echo "tunnels failed:" >&2; grep -e error -e "upgrade failed" "$work"/*.log | head >&2; exit 1
fi

for row in "${rows[@]}"; do printf '%s\t%s\t%s\n' "$row" "${label[$row]}" "${binary[$row]:-}"; done > "$work/rows.tsv"
python3 - "$work" "$duration" "$repetitions" "$tunnels" "$size" "$mode" "$((SECONDS - started))" \
    > benches/load/websocket-results.md <<'PY'
import datetime, os, platform, re, statistics, subprocess, sys
work, duration, repetitions, tunnels, size, mode, took = sys.argv[1:8]
repetitions = int(repetitions)
rows = [line.rstrip("\n").split("\t") for line in open(f"{work}/rows.tsv")]
def parse(row, rep):
    text = open(f"{work}/load-{row}-{rep}.txt").read()
    return {key: float(re.search(rf"\b{key}=([\d.]+)", text).group(1))
            for key in ("per_second", "p50_us", "p99_us", "round_trips")}
runs = {row: [parse(row, rep) for rep in range(1, repetitions + 1)] for row, _, _ in rows}
median = lambda row, key: statistics.median(run[key] for run in runs[row])
# Each repetition's ratio to the nginx run just before it: interleaving makes these fairer than
# a ratio of medians on a noisy machine, and their range is the spread.
ratios = lambda row, key: [a[key] / b[key] for a, b in zip(runs[row], runs["nginx"])]
spread = lambda values: f"{min(values):.2f}–{max(values):.2f}"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
print(f"# WebSocket tunnels under load ({datetime.date.today()})\n")
print(f"`benches/load/websocket.sh{mode}`: {tunnels} tunnels, in each one {size}-byte masked text message at "
      f"a time, sent and its echo awaited (a round trip); {duration} s per measurement, {repetitions} "
      f"interleaved repetitions, medians; every echo compared with what was sent, and every row passed "
      f"`ws-load --check` first. The client (`ws-load`, one thread) and the backend (`ws-echo`, one thread) "
      f"on core 1, the proxy on core 0. Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; "
      f"nginx {nginx}, one worker. The run took {took} s once built.\n")
for row, label, binary in rows:
    if binary:
        st = os.stat(binary)
        when = datetime.datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M")
        print(f"- {label}: `{binary}` ({st.st_size:,} bytes, built {when})")
print()
print("| row | round trips/s | p50 | p99 | round trips/s ÷ nginx | p50 ÷ nginx | p99 ÷ nginx | round trips/s, range | ÷ nginx per repetition, range |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for row, label, _ in rows:
    rps, p50, p99 = (median(row, key) for key in ("per_second", "p50_us", "p99_us"))
    values = [run["per_second"] for run in runs[row]]
    print(f"| {label} | {rps:,.0f} | {p50:,.0f} µs | {p99:,.0f} µs | {rps / median('nginx', 'per_second'):.2f} | "
          f"{p50 / median('nginx', 'p50_us'):.2f} | {p99 / median('nginx', 'p99_us'):.2f} | "
          f"{min(values):,.0f}–{max(values):,.0f} | {spread(ratios(row, 'per_second'))} |")
if any(row == "baseline" for row, _, _ in rows):
    after = lambda key: [a[key] / b[key] for a, b in zip(runs["portcullis"], runs["baseline"])]
    print(f"\nPortcullis ÷ the baseline, per repetition (median, range): round trips/s "
          f"{statistics.median(after('per_second')):.2f} ({spread(after('per_second'))}), "
          f"p50 {statistics.median(after('p50_us')):.2f} ({spread(after('p50_us'))}), "
          f"p99 {statistics.median(after('p99_us')):.2f} ({spread(after('p99_us'))}).")
PY
cat benches/load/websocket-results.md
say "done in $((SECONDS - started)) s"
