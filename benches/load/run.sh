#!/usr/bin/env bash
# Loopback load comparison, all in one run: nginx as the backend (a), nginx proxying to it (b), nginx
# with the seed's Lua access phase (c), and Portcullis without login (d), logged in with the Rhai
# require-group policy (e) and with the Wasm one (f); (g) `bare-proxy`, hyper's server and hyper-util's
# pooled client with nothing else, for what Portcullis's own work costs; and (h) Portcullis with a Rhai
# policy that reads the request, so it runs on every request (e's runs once per session). The proxy
# under test runs on core 0; wrk and the backend on core 1. Three interleaved repetitions; the table shows medians and ratios to (b).
#
#   benches/load/run.sh            10 s per measurement, plus a 60 s memory run
#   benches/load/run.sh --quick    3 s per measurement, 10 s memory run (under 2 minutes once built)
#
# Installs wrk, nginx and libnginx-mod-http-lua (Debian) and the wasm32-wasip2 target when missing.
# Writes benches/load/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
duration=10 memory_duration=60
if [[ "${1:-}" == "--quick" ]]; then duration=3 memory_duration=10; fi

say() { printf '== %s\n' "$*" >&2; }
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]]; then
  say "installing wrk, nginx and libnginx-mod-http-lua"
  apt-get update -q && apt-get install -y -q --no-install-recommends wrk nginx-light libnginx-mod-http-lua
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then rustup target add wasm32-wasip2; fi
say "building Portcullis and the Wasm sample (release)"
cargo build --release --locked -p portcullis -p portcullis-benches --bin portcullis --bin bare-proxy
cargo build --release --locked --target wasm32-wasip2 --manifest-path policies/wasm/Cargo.toml \
  --target-dir target/wasm-policies
wasm=$repo/target/wasm-policies/wasm32-wasip2/release/require_group.wasm

work=$(mktemp -d /tmp/portcullis-load-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source benches/load/common.sh
backend_port=$(free_port) proxy_port=$(free_port) lua_port=$(free_port) portcullis_port=$(free_port) idp_port=$(free_port) bare_port=$(free_port)
session_id=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')

nginx_server() { # role, port, core, location body
  taskset -c "$3" nginx -c "$(nginx_conf "$1" "$2" "$4")" -e "$work/nginx-$1.error.log" &
  pids+=($!)
}
nginx_server backend "$backend_port" 1 'return 200 "ok\\n";'
nginx_server proxy "$proxy_port" 0 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_server lua "$lua_port" 0 "access_by_lua_file $repo/benches/load/seed-access.lua; proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"

{ portcullis_config "$portcullis_port" "$idp_port"; cat <<TOML; } > "$work/portcullis.toml"
[wasm]
cache_dir = "$work/wasm-cache"
[[routes]]
name = "none"
path = "/none"
auth = "none"
upstream = "http://127.0.0.1:$backend_port"
[[routes]]
name = "rhai"
path = "/rhai"
upstream = "http://127.0.0.1:$backend_port"
policy = "$repo/policies/require-group.rhai"
[routes.policy_config]
group = "admins"
[[routes]]
name = "rhai-request"
path = "/rhai-request"
upstream = "http://127.0.0.1:$backend_port"
policy = "$repo/policies/read-only-for-viewers.rhai"
[routes.policy_config]
viewers = "staff"
[[routes]]
name = "wasm"
path = "/wasm"
upstream = "http://127.0.0.1:$backend_port"
policy = "$wasm"
[routes.policy_config]
group = "admins"
TOML
taskset -c 0 target/release/portcullis run --config "$work/portcullis.toml" > "$work/portcullis.out" 2> "$work/portcullis.log" &
portcullis_pid=$!
pids+=($portcullis_pid)
taskset -c 0 target/release/bare-proxy "127.0.0.1:$bare_port" "127.0.0.1:$backend_port" > "$work/bare.out" &
pids+=($!)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$portcullis_port/none" && curl -s -o /dev/null "http://127.0.0.1:$backend_port/" \
    && curl -s -o /dev/null "http://127.0.0.1:$bare_port/" && break
  sleep 0.1
done

say "logging in as alice through the development provider"
portcullis_cookie=$(login_as_alice "$portcullis_port" "$idp_port" /rhai)
[[ -n "$portcullis_cookie" ]] || { echo "login failed; log:" >&2; cat "$work/portcullis.log" >&2; exit 1; }
for url in "http://127.0.0.1:$portcullis_port/rhai" "http://127.0.0.1:$portcullis_port/wasm" "http://127.0.0.1:$portcullis_port/rhai-request"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $portcullis_cookie" "$url")
  [[ "$status" == 200 ]] || { echo "$url answered $status with the session" >&2; exit 1; }
done
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: session=$session_id" "http://127.0.0.1:$lua_port/")
[[ "$status" == 200 ]] || { echo "the Lua proxy answered $status" >&2; cat "$work/nginx-lua.error.log" >&2; exit 1; }

rows=(a b c d e f g h)
declare -A url cookie label
url[a]="http://127.0.0.1:$backend_port/";        label[a]="a. backend directly (nginx return 200)"
url[b]="http://127.0.0.1:$proxy_port/";          label[b]="b. nginx proxy_pass (keep-alive)"
url[c]="http://127.0.0.1:$lua_port/";            label[c]="c. nginx + Lua seed access phase"; cookie[c]="session=$session_id"
url[d]="http://127.0.0.1:$portcullis_port/none"; label[d]="d. Portcullis, auth = none"
url[e]="http://127.0.0.1:$portcullis_port/rhai"; label[e]="e. Portcullis, session + require-group.rhai"; cookie[e]=$portcullis_cookie
url[f]="http://127.0.0.1:$portcullis_port/wasm"; label[f]="f. Portcullis, session + require_group.wasm (pooled)"; cookie[f]=$portcullis_cookie
url[g]="http://127.0.0.1:$bare_port/";           label[g]="g. bare hyper proxy"
url[h]="http://127.0.0.1:$portcullis_port/rhai-request"; label[h]="h. Portcullis, session + read-only-for-viewers.rhai"; cookie[h]=$portcullis_cookie

run_wrk() { # row, seconds → wrk output file
  local row=$1 seconds=$2 out=$3
  local header=()
  [[ -n "${cookie[$row]:-}" ]] && header=(-H "Cookie: ${cookie[$row]}")
  taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency "${header[@]}" "${url[$row]}" > "$out"
}
say "warming up"
for row in "${rows[@]}"; do run_wrk "$row" 1 /dev/null; done
for rep in 1 2 3; do
  for row in "${rows[@]}"; do
    say "repetition $rep, ${label[$row]}"
    run_wrk "$row" "$duration" "$work/wrk-$row-$rep.txt"
  done
done

say "memory: Portcullis under load (e) for ${memory_duration} s"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$portcullis_pid/status"; }
rss_before=$(rss)
run_wrk e "$memory_duration" "$work/wrk-memory.txt"
rss_after=$(rss)

python3 - "$work" "$duration" "$rss_before" "$rss_after" "$memory_duration" > benches/load/results.md <<'PY'
import re, statistics, sys, platform, subprocess, datetime
work, duration, rss_before, rss_after, memory_duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
labels = {
    "a": "a. backend directly (nginx `return 200`)",
    "b": "b. nginx `proxy_pass`, upstream keep-alive",
    "c": "c. nginx + Lua: the seed's access phase",
    "d": "d. Portcullis, `auth = \"none\"`",
    "e": "e. Portcullis, session + `require-group.rhai` (reads only claims: runs once per session)",
    "f": "f. Portcullis, session + `require_group.wasm` (pooled)",
    "g": "g. bare hyper server + hyper-util pooled client (`bare-proxy`, no logic)",
    "h": "h. Portcullis, session + `read-only-for-viewers.rhai` (reads the request: runs every time)",
}
def seconds(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = seconds(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = seconds(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, p50, p99, int(errors.group(1)) if errors else 0
results = {}
for row in labels:
    runs = [parse(f"{work}/wrk-{row}-{rep}.txt") for rep in (1, 2, 3)]
    results[row] = tuple(statistics.median(run[i] for run in runs) for i in range(3)) + (sum(run[3] for run in runs),)
base = results["b"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"# Load comparison ({datetime.date.today()})\n")
print(f"`benches/load/run.sh{'' if duration == '10' else ' --quick'}`: {duration} s per measurement, 3 interleaved repetitions, medians; "
      f"wrk -t1 -c32 on core 1 (with the backend), the proxy under test on core 0. Machine: {cpu}, "
      f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, Linux {platform.release()}.\n")
print("| row | req/s | p50 | p99 | req/s ÷ b | p99 ÷ b | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for row, label in labels.items():
    rps, p50, p99, errors = results[row]
    print(f"| {label} | {rps:,.0f} | {p50*1e3:.3f} ms | {p99*1e3:.3f} ms | {rps/base[0]:.2f} | {p99/base[2]:.2f} | {errors} |")
e, d, f = results["e"], results["d"], results["f"]
print("\nTargets (issue #8): e ≥ 1.0 × b req/s: **%s** (%.2f); e p99 ≤ 1.2 × b: **%s** (%.2f); d ≥ 1.1 × b: **%s** (%.2f); f ≥ 0.95 × e: **%s** (%.2f)." % (
    "met" if e[0] >= base[0] else "missed", e[0]/base[0],
    "met" if e[2] <= 1.2*base[2] else "missed", e[2]/base[2],
    "met" if d[0] >= 1.1*base[0] else "missed", d[0]/base[0],
    "met" if f[0] >= 0.95*e[0] else "missed", f[0]/e[0]))
g, h = results["g"], results["h"]
print("\nhyper and tokio with nothing else: g = %.2f × b. Portcullis without login is %.2f × g, logged in with "
      "Rhai %.2f × g. Wasm against a Rhai policy that also runs on every request: f = %.2f × h."
      % (g[0]/base[0], d[0]/g[0], e[0]/g[0], f[0]/h[0]))
print(f"\nMemory: Portcullis resident {rss_before/1024:.1f} MiB before and {rss_after/1024:.1f} MiB after {memory_duration} s of load on (e) "
      f"({(rss_after-rss_before)/1024:+.1f} MiB).")
PY
cat benches/load/results.md
