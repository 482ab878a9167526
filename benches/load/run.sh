#!/usr/bin/env bash
# Loopback load comparison, all in one run. Plain HTTP/1.1 (wrk): nginx as the backend (a), nginx
# proxying to it (b), nginx with the seed's Lua access phase (c), and Portcullis without login (d),
# logged in with the Rhai require-group policy (e) and with the Wasm one (f); (g) `bare-proxy`,
# hyper's server and hyper-util's pooled client with nothing else, and (o) `spike-proxy`, issue
# #15's spike (hyper's server and client driven in one task per connection on a current-thread
# runtime), for what hyper costs and what Portcullis's own work costs; and (h) Portcullis with a Rhai policy that reads the request, so it runs on every request
# (e's runs once per session), and (p) e's route with the sessions in Redis (`store = "redis"`, a
# redis-server on the backend's core). TLS, nginx and a second Portcullis terminating it on the same
# self-signed certificate: HTTP/1.1 with wrk (i nginx, j Portcullis without login, k logged in with
# require-group.rhai) and HTTP/2 with h2load, 32 connections × 4 streams (l, m, n likewise). The
# proxy under test runs on core 0; the client and the backend on core 1. Interleaved repetitions;
# the tables show medians and ratios to nginx proxying the same way (b, i or l).
#
#   benches/load/run.sh            5 repetitions of 10 s per row, plus a 60 s memory run (~14 min)
#   benches/load/run.sh --quick    2 repetitions of 2 s, 5 s memory run (~1.5 minutes once built)
#
# Installs wrk, h2load (nghttp2-client), nginx, libnginx-mod-http-lua and redis-server (Debian) and
# the wasm32-wasip2 target when missing. Writes benches/load/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
duration=10 memory_duration=60 repetitions=5
if [[ "${1:-}" == "--quick" ]]; then duration=2 memory_duration=5 repetitions=2; fi

say() { printf '== %s\n' "$*" >&2; }
if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null || ! command -v nginx >/dev/null \
    || ! command -v redis-server >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]]; then
  say "installing wrk, h2load, nginx, libnginx-mod-http-lua and redis-server"
  apt-get update -q && apt-get install -y -q --no-install-recommends wrk nghttp2-client nginx-light libnginx-mod-http-lua redis-server
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then rustup target add wasm32-wasip2; fi
say "building Portcullis and the Wasm sample (release)"
cargo build --release --locked -p portcullis -p portcullis-benches --bin portcullis --bin bare-proxy --bin spike-proxy
cargo build --release --locked --target wasm32-wasip2 --manifest-path policies/wasm/Cargo.toml \
  --target-dir target/wasm-policies
wasm=$repo/target/wasm-policies/wasm32-wasip2/release/require_group.wasm

work=$(mktemp -d /tmp/portcullis-load-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source benches/load/common.sh
backend_port=$(free_port) proxy_port=$(free_port) lua_port=$(free_port) portcullis_port=$(free_port) idp_port=$(free_port) bare_port=$(free_port) spike_port=$(free_port)
tls_port=$(free_port) portcullis_tls_port=$(free_port) idp_tls_port=$(free_port)
redis_port=$(free_port) portcullis_redis_port=$(free_port) idp_redis_port=$(free_port)
make_cert
session_id=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')

nginx_server() { # role, port, core, location body
  taskset -c "$3" nginx -c "$(nginx_conf "$1" "$2" "$4")" -e "$work/nginx-$1.error.log" &
  pids+=($!)
}
nginx_server backend "$backend_port" 1 'return 200 "ok\\n";'
nginx_server proxy "$proxy_port" 0 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_server tls "$tls_port" 0 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_server lua "$lua_port" 0 "access_by_lua_file $repo/benches/load/seed-access.lua; proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"

{ portcullis_config "$portcullis_port" "$idp_port"; common_routes; cat <<TOML; } > "$work/portcullis.toml"
[wasm]
cache_dir = "$work/wasm-cache"
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
# TLS on every listener of a config: the TLS rows get an instance of their own (idle while the
# others are measured).
{ portcullis_config "$portcullis_tls_port" "$idp_tls_port" https; common_routes; } > "$work/portcullis-tls.toml"
taskset -c 0 target/release/portcullis run --config "$work/portcullis-tls.toml" > "$work/portcullis-tls.out" 2> "$work/portcullis-tls.log" &
pids+=($!)
# Sessions in Redis: a throw-away redis-server beside the backend, and an instance of its own.
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
pids+=($!)
(umask 077; head -c 32 /dev/urandom | base64 > "$work/shared-session.key")
{ portcullis_config "$portcullis_redis_port" "$idp_redis_port" http \
    "$(printf 'store = "redis"\nredis_url = "redis://127.0.0.1:%s"\nsecret_file = "%s"' "$redis_port" "$work/shared-session.key")"
  common_routes; } > "$work/portcullis-redis.toml"
taskset -c 0 target/release/portcullis run --config "$work/portcullis-redis.toml" > "$work/portcullis-redis.out" 2> "$work/portcullis-redis.log" &
pids+=($!)
taskset -c 0 target/release/bare-proxy "127.0.0.1:$bare_port" "127.0.0.1:$backend_port" > "$work/bare.out" &
pids+=($!)
taskset -c 0 target/release/spike-proxy "127.0.0.1:$spike_port" "127.0.0.1:$backend_port" > "$work/spike.out" &
pids+=($!)
for server in "http://127.0.0.1:$backend_port/" "http://127.0.0.1:$proxy_port/" "http://127.0.0.1:$lua_port/" \
    "https://127.0.0.1:$tls_port/" "http://127.0.0.1:$portcullis_port/none" "https://127.0.0.1:$portcullis_tls_port/none" \
    "http://127.0.0.1:$bare_port/" "http://127.0.0.1:$spike_port/" "http://127.0.0.1:$portcullis_redis_port/none"; do
  for _ in $(seq 100); do curl -sk -o /dev/null "$server" && continue 2; sleep 0.1; done
  echo "$server does not answer; the logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1
done

say "logging in as alice through the development provider"
portcullis_cookie=$(login_as_alice "$portcullis_port" "$idp_port" /rhai)
[[ -n "$portcullis_cookie" ]] || { echo "login failed; log:" >&2; cat "$work/portcullis.log" >&2; exit 1; }
redis_cookie=$(login_as_alice "$portcullis_redis_port" "$idp_redis_port" /rhai)
[[ -n "$redis_cookie" ]] || { echo "login with the Redis store failed; log:" >&2; cat "$work/portcullis-redis.log" >&2; exit 1; }
tls_cookie=$(login_as_alice "$portcullis_tls_port" "$idp_tls_port" /rhai https)
[[ -n "$tls_cookie" ]] || { echo "login over TLS failed; log:" >&2; cat "$work/portcullis-tls.log" >&2; exit 1; }
for url in "http://127.0.0.1:$portcullis_port/rhai" "http://127.0.0.1:$portcullis_port/wasm" "http://127.0.0.1:$portcullis_port/rhai-request"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $portcullis_cookie" "$url")
  [[ "$status" == 200 ]] || { echo "$url answered $status with the session" >&2; exit 1; }
done
for version in --http1.1 --http2; do
  for url in "https://127.0.0.1:$tls_port/" "https://127.0.0.1:$portcullis_tls_port/none" "https://127.0.0.1:$portcullis_tls_port/rhai"; do
    answer=$(curl -sk "$version" -o /dev/null -w '%{http_code} HTTP/%{http_version}' -H "Cookie: $tls_cookie" "$url")
    [[ "$answer" == "200 HTTP/${version#--http}" ]] || { echo "$url answered $answer over $version" >&2; exit 1; }
  done
done
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $redis_cookie" "http://127.0.0.1:$portcullis_redis_port/rhai")
[[ "$status" == 200 ]] || { echo "the Redis-store instance answered $status with the session" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: session=$session_id" "http://127.0.0.1:$lua_port/")
[[ "$status" == 200 ]] || { echo "the Lua proxy answered $status" >&2; cat "$work/nginx-lua.error.log" >&2; exit 1; }

rows=(a b c d e f g o h p i j k l m n)
declare -A url cookie client
for row in "${rows[@]}"; do client[$row]=wrk; done
url[a]="http://127.0.0.1:$backend_port/"
url[b]="http://127.0.0.1:$proxy_port/"
url[c]="http://127.0.0.1:$lua_port/";                      cookie[c]="session=$session_id"
url[d]="http://127.0.0.1:$portcullis_port/none"
url[e]="http://127.0.0.1:$portcullis_port/rhai";           cookie[e]=$portcullis_cookie
url[f]="http://127.0.0.1:$portcullis_port/wasm";           cookie[f]=$portcullis_cookie
url[g]="http://127.0.0.1:$bare_port/"
url[o]="http://127.0.0.1:$spike_port/"
url[h]="http://127.0.0.1:$portcullis_port/rhai-request";   cookie[h]=$portcullis_cookie
url[p]="http://127.0.0.1:$portcullis_redis_port/rhai";     cookie[p]=$redis_cookie
url[i]="https://127.0.0.1:$tls_port/"
url[j]="https://127.0.0.1:$portcullis_tls_port/none"
url[k]="https://127.0.0.1:$portcullis_tls_port/rhai";      cookie[k]=$tls_cookie
url[l]=${url[i]} url[m]=${url[j]} url[n]=${url[k]} cookie[n]=$tls_cookie
client[l]=h2load client[m]=h2load client[n]=h2load

run_load() { # row, seconds, output file (h2load: with the latency percentiles from its log appended)
  local row=$1 seconds=$2 out=$3
  if [[ "${client[$row]}" == h2load ]]; then
    local header=()
    [[ -n "${cookie[$row]:-}" ]] && header=(-H "cookie: ${cookie[$row]}")
    taskset -c 1 h2load -t1 -c32 -m4 -D "$seconds" --log-file="$out.log" "${header[@]}" "${url[$row]}" > "$out" \
      || { echo "row $row: h2load ${url[$row]} failed" >&2; tail -n 5 "$out" >&2; exit 1; }
    python3 - "$out.log" >> "$out" <<'PY'
import sys
times = sorted(int(line.split("\t")[2]) for line in open(sys.argv[1]))
print(f"latency p50 us: {times[len(times) // 2]}\nlatency p99 us: {times[min(len(times) - 1, len(times) * 99 // 100)]}")
PY
    rm -f "$out.log"
  else
    local header=()
    [[ -n "${cookie[$row]:-}" ]] && header=(-H "Cookie: ${cookie[$row]}")
    taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency "${header[@]}" "${url[$row]}" > "$out" \
      || { echo "row $row: wrk ${url[$row]} failed" >&2; exit 1; }
  fi
}
say "warming up"
for row in "${rows[@]}"; do run_load "$row" 1 "$work/warm-up.txt"; done
for rep in $(seq "$repetitions"); do
  for row in "${rows[@]}"; do
    say "repetition $rep of $repetitions, row $row: ${client[$row]} ${url[$row]}"
    run_load "$row" "$duration" "$work/load-$row-$rep.txt"
  done
done

say "memory: Portcullis under load (e) for ${memory_duration} s"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$portcullis_pid/status"; }
rss_before=$(rss)
run_load e "$memory_duration" "$work/load-memory.txt"
rss_after=$(rss)

python3 - "$work" "$duration" "$repetitions" "$rss_before" "$rss_after" "$memory_duration" > benches/load/results.md <<'PY'
import re, statistics, sys, platform, subprocess, datetime
work, duration, repetitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
rss_before, rss_after, memory_duration = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
plain = {
    "a": "a. backend directly (nginx `return 200`)",
    "b": "b. nginx `proxy_pass`, upstream keep-alive",
    "c": "c. nginx + Lua: the seed's access phase",
    "d": "d. Portcullis, `auth = \"none\"`",
    "e": "e. Portcullis, session + `require-group.rhai` (reads only claims: runs once per session)",
    "f": "f. Portcullis, session + `require_group.wasm` (pooled)",
    "g": "g. bare hyper server + hyper-util pooled client (`bare-proxy`, no logic)",
    "o": "o. issue #15's spike: hyper server + client in one task per connection, current-thread runtime (`spike-proxy`, no logic)",
    "h": "h. Portcullis, session + `read-only-for-viewers.rhai` (reads the request: runs every time)",
    "p": "p. e's route with the sessions in Redis (`store = \"redis\"`: the cache in front, a Redis read per `cache_lifetime`)",
}
tls = {
    "i": ("i. nginx `proxy_pass`, TLS, HTTP/1.1 (wrk)", "i"),
    "j": ("j. Portcullis, `auth = \"none\"`, TLS, HTTP/1.1 (wrk)", "i"),
    "k": ("k. Portcullis, session + `require-group.rhai`, TLS, HTTP/1.1 (wrk)", "i"),
    "l": ("l. nginx `proxy_pass`, TLS, HTTP/2 (h2load)", "l"),
    "m": ("m. Portcullis, `auth = \"none\"`, TLS, HTTP/2 (h2load)", "l"),
    "n": ("n. Portcullis, session + `require-group.rhai`, TLS, HTTP/2 (h2load)", "l"),
}
def seconds(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
def parse(path):
    """req/s, p50 and p99 in seconds, and the requests not answered 2xx, from wrk or h2load."""
    text = open(path).read()
    if text.startswith("starting benchmark"):  # h2load
        rps = float(re.search(r"finished in \S+, ([\d.]+) req/s", text).group(1))
        p50 = int(re.search(r"latency p50 us: (\d+)", text).group(1)) * 1e-6
        p99 = int(re.search(r"latency p99 us: (\d+)", text).group(1)) * 1e-6
        done, ok = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text).groups()
        status = re.search(r"status codes: (\d+) 2xx", text)
        return rps, p50, p99, int(done) - int(status.group(1)) + (int(done) - int(ok))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = seconds(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = seconds(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, p50, p99, int(errors.group(1)) if errors else 0
results = {}
for row in [*plain, *tls]:
    runs = [parse(f"{work}/load-{row}-{rep}.txt") for rep in range(1, repetitions + 1)]
    results[row] = tuple(statistics.median(run[i] for run in runs) for i in range(3)) + (sum(run[3] for run in runs),)
def line(label, row, base):
    rps, p50, p99, errors = results[row]
    return f"| {label} | {rps:,.0f} | {p50*1e3:.3f} ms | {p99*1e3:.3f} ms | {rps/results[base][0]:.2f} | {p99/results[base][2]:.2f} | {errors} |"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
print(f"# Load comparison ({datetime.date.today()})\n")
print(f"`benches/load/run.sh{'' if duration == '10' else ' --quick'}`: {duration} s per measurement, {repetitions} interleaved repetitions, medians "
      f"(non-2xx: the sum); the client and the backend on core 1, the proxy under test on core 0. Machine: {cpu}, "
      f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, Linux {platform.release()}; nginx {nginx}.\n")
print("Plain HTTP/1.1, `wrk -t1 -c32`:\n")
print("| row | req/s | p50 | p99 | req/s ÷ b | p99 ÷ b | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for row, label in plain.items():
    print(line(label, row, "b"))
def negotiated(row):
    found = re.search(r"TLS Protocol: (\S+)\s+Cipher: (\S+)", open(f"{work}/load-{row}-1.txt").read())
    return " ".join(found.groups()) if found else "?"
print(f"\nTLS (one self-signed P-256 certificate for nginx and Portcullis, h2load negotiated {negotiated('l')} with nginx and "
      f"{negotiated('m')} with Portcullis; the upstream is the same plain backend): HTTP/1.1 with `wrk -t1 -c32`, HTTP/2 with `h2load -t1 -c32 -m4` (32 connections, "
      f"4 streams each; latencies from its per-request log). Ratios to nginx with the same protocol (i or l).\n")
print("| row | req/s | p50 | p99 | req/s ÷ nginx | p99 ÷ nginx | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for row, (label, base) in tls.items():
    print(line(label, row, base))
b, c, d, e, f = (results[row] for row in "bcdef")
met = lambda ok: "met" if ok else "missed"
print("\nTargets (issue #15): d ≥ 0.95 × b: **%s** (%.2f); e ≥ 0.85 × b: **%s** (%.2f); e ≥ 1.3 × c: **%s** (%.2f); "
      "e p99 ≤ 1.2 × b's: **%s** (%.2f); f ≥ 0.8 × b: **%s** (%.2f)." % (
    met(d[0] >= 0.95 * b[0]), d[0] / b[0],
    met(e[0] >= 0.85 * b[0]), e[0] / b[0],
    met(e[0] >= 1.3 * c[0]), e[0] / c[0],
    met(e[2] <= 1.2 * b[2]), e[2] / b[2],
    met(f[0] >= 0.8 * b[0]), f[0] / b[0]))
g, h, o, p = results["g"], results["h"], results["o"], results["p"]
print("\nSessions in Redis: p = %.2f × e (the same route with sled), %.2f × b." % (p[0] / e[0], p[0] / b[0]))
print("\nhyper and tokio with nothing else: g = %.2f × b, the spike o = %.2f × b. Portcullis without login is "
      "%.2f × o, logged in with Rhai %.2f × o. Wasm against a Rhai policy that also runs on every request: f = %.2f × h."
      % (g[0]/b[0], o[0]/b[0], d[0]/o[0], e[0]/o[0], f[0]/h[0]))
print(f"\nMemory: Portcullis resident {rss_before/1024:.1f} MiB before and {rss_after/1024:.1f} MiB after {memory_duration} s of load on (e) "
      f"({(rss_after-rss_before)/1024:+.1f} MiB).")
PY
cat benches/load/results.md
