#!/usr/bin/env bash
# WebSocket tunnels under load (issue #15): round trips through an upgraded connection. `ws-load`
# opens 32 tunnels and in each sends a 64-byte masked text message and waits for its echo from
# `ws-echo` before sending the next, checking every echo; it reports round trips per second and the
# p50/p99 latency of one, and the script the proxy's CPU time per round trip. Rows: nginx proxying
# WebSockets (`proxy_pass` with the Upgrade and Connection headers set, the peer), Portcullis on an
# `auth = "none"` route, optionally a second Portcullis binary (a baseline, e.g. before a change)
# and the backend directly (the floor). The proxy under test runs on core 0; the client and the
# backend on core 1. Before measuring, each row passes `ws-load --check` (0 B–1 MiB messages, split
# and coalesced writes, close handshake). Interleaved repetitions; the table shows medians, ratios
# to nginx and the spread.
#
#   benches/load/websocket.sh            5 repetitions of 5 s per row (~110 s once built, 4 rows)
#   benches/load/websocket.sh --quick    2 repetitions of 3 s (~30 s once built)
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
declare -A proxy_pid  # per row: the process whose CPU time (with its children's) is the proxy's
# The upstream block's `keepalive` does not apply: nginx never pools an upgraded connection.
taskset -c 0 nginx -c "$(nginx_conf proxy "$proxy_port" 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";')" \
  -e "$work/nginx-proxy.error.log" &
pids+=($!) proxy_pid[nginx]=$!
start_portcullis() { # name, binary, port, idp port
  { portcullis_config "$3" "$4"; common_routes; } > "$work/$1.toml"
  taskset -c 0 "$2" run --config "$work/$1.toml" > "$work/$1.out" 2> "$work/$1.log" &
  pids+=($!) proxy_pid[$1]=$!
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

# The CPU time (user + system, clock ticks) of a process and its children (nginx's worker). Per
# round trip it is steadier than round trips/s here: another program taking core 0 for a while
# lowers the rate but hardly the proxy's CPU time per round trip.
cpu_ticks() { # pid
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1"); do
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
run_load() { # row, seconds, output file (ws-load's line, then the proxy's CPU time)
  local pid=${proxy_pid[$1]:-} before=0
  [[ -z "$pid" ]] || before=$(cpu_ticks "$pid")
  taskset -c 1 "$target/release/ws-load" --tunnels "$tunnels" --size "$size" --seconds "$2" \
    "${address[$1]}" "${path[$1]}" > "$3" \
    || { echo "row $1: ws-load failed; the logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
  [[ -z "$pid" ]] || echo "proxy_cpu_ticks=$(($(cpu_ticks "$pid") - before)) clock_ticks_per_second=$(getconf CLK_TCK)" >> "$3"
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
    run = {key: float(value) for key, value in re.findall(r"\b(\w+)=([\d.]+)", text)}
    if "proxy_cpu_ticks" in run:  # µs of proxy CPU time per round trip
        run["cpu_us"] = run["proxy_cpu_ticks"] / run["clock_ticks_per_second"] * 1e6 / run["round_trips"]
    return run
runs = {row: [parse(row, rep) for rep in range(1, repetitions + 1)] for row, _, _ in rows}
median = lambda row, key: statistics.median(run[key] for run in runs[row])
# Each repetition's ratio to the nginx run just before it: interleaving makes these fairer than
# a ratio of medians on a noisy machine, and their range is the spread.
ratios = lambda row, key, base="nginx": [a[key] / b[key] for a, b in zip(runs[row], runs[base])]
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
print("\n÷ n: the median's ratio to nginx's. ÷ n, range: the lowest and highest ratio of a repetition to the "
      "nginx run just before it (the spread). Proxy CPU: the proxy's user + system time per round trip (the "
      "kernel counts it in 1/100 s), which another program taking core 0 for a while disturbs much less than "
      "the rate.\n")
print("| row | round trips/s | ÷ n | ÷ n, range | p50 | ÷ n | p99 | ÷ n | p99 ÷ n, range | proxy CPU per round trip | ÷ n | ÷ n, range |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row, label, _ in rows:
    rps, p50, p99 = (median(row, key) for key in ("per_second", "p50_us", "p99_us"))
    cells = [label, f"{rps:,.0f}", f"{rps / median('nginx', 'per_second'):.2f}", spread(ratios(row, "per_second")),
             f"{p50:,.0f} µs", f"{p50 / median('nginx', 'p50_us'):.2f}",
             f"{p99:,.0f} µs", f"{p99 / median('nginx', 'p99_us'):.2f}", spread(ratios(row, "p99_us"))]
    if "cpu_us" in runs[row][0]:
        cpu_us = median(row, "cpu_us")
        cells += [f"{cpu_us:.1f} µs", f"{cpu_us / median('nginx', 'cpu_us'):.2f}", spread(ratios(row, "cpu_us"))]
    else:
        cells += ["—", "", ""]
    print("| " + " | ".join(cells) + " |")
print("\nRound trips/s per repetition: " + "; ".join(
    f"{row} " + ", ".join(f"{run['per_second']:,.0f}" for run in runs[row]) for row, label, _ in rows) + ".")
if any(row == "baseline" for row, _, _ in rows):
    versus = lambda key: f"{statistics.median(ratios('portcullis', key, 'baseline')):.2f} ({spread(ratios('portcullis', key, 'baseline'))})"
    print(f"\nPortcullis ÷ the baseline, per repetition (median, range): round trips/s {versus('per_second')}, "
          f"p50 {versus('p50_us')}, p99 {versus('p99_us')}, proxy CPU per round trip {versus('cpu_us')}.")
PY
cat benches/load/websocket-results.md
say "done in $((SECONDS - started)) s"
