#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: nginx proxy_pass,
# bare-proxy (hyper + hyper-util with nothing else), spike-proxy (issue #15's spike: hyper's server
# and client in one task per connection), and Portcullis without login, logged in without a
# policy, and logged in with require-group.rhai. Unlike req/s on a shared machine (±30 % between
# runs here), these counts repeat to ±0.1 %, so they show small changes. Kernel time (loopback TCP,
# about the same for every proxy) is not counted. Under valgrind the CPU's SHA extensions are
# hidden, so the session rows count SHA-256 in software (~3,000 more than on the machine itself).
#
#   benches/load/instructions.sh          2,000 requests per row (8 connections), ~2 minutes once built
#
# Installs valgrind, nginx and libnginx-mod-http-lua (Debian) when missing. Wasm routes are left out:
# the pooling allocator's address-space reservation does not start under valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
requests=2000
say() { printf '== %s\n' "$*" >&2; }
if ! command -v valgrind >/dev/null || ! command -v nginx >/dev/null || [[ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]]; then
  say "installing valgrind, nginx and libnginx-mod-http-lua"
  apt-get update -q && apt-get install -y -q --no-install-recommends valgrind nginx-light libnginx-mod-http-lua
fi
cargo build --release --locked -p portcullis -p portcullis-benches --bin portcullis --bin bare-proxy --bin spike-proxy

work=$(mktemp -d /tmp/portcullis-instructions-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source benches/load/common.sh
backend_port=$(free_port) proxy_port=$(free_port) portcullis_port=$(free_port) idp_port=$(free_port) bare_port=$(free_port) spike_port=$(free_port)

# One process each: valgrind follows no fork.
single_process='s|^worker_processes 1;|worker_processes 1;\nmaster_process off;|'
nginx -c "$(nginx_conf backend "$backend_port" 'return 200 "ok\\n";' "$single_process")" -e "$work/backend.err" &
pids+=($!)

{ portcullis_config "$portcullis_port" "$idp_port"; common_routes; cat <<TOML; } > "$work/portcullis.toml"
[[routes]]
name = "session"
path = "/session"
upstream = "http://127.0.0.1:$backend_port"
TOML

# A keep-alive client sending exactly N requests over C connections.
cat > "$work/load.py" <<'PY'
import http.client, sys, threading
port, path, cookie, n, conns = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
failed = []
def worker(count):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(count):
        c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        r = c.getresponse(); r.read()
        if r.status != 200: failed.append(r.status)
threads = [threading.Thread(target=worker, args=(n // conns,)) for _ in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
if failed: sys.exit(f"{len(failed)} requests failed, e.g. {failed[:3]}")
PY

# Starts a command under callgrind, waits for `port`, returns its pid in $started.
under_callgrind() { # port, command...
  local port=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" "$@" > "$work/out-$port.log" 2>&1 &
  started=$!; pids+=($started)
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.2; done
  echo "nothing answered on $port; log:" >&2; cat "$work/out-$port.log" >&2; exit 1
}
count() { # pid, port, path, cookie → instructions per request (after a warm-up; counters zeroed)
  python3 "$work/load.py" "$2" "$3" "$4" 400 8
  callgrind_control -z "$1" >/dev/null 2>&1
  python3 "$work/load.py" "$2" "$3" "$4" "$requests" 8
  rm -f "$work"/callgrind."$1".*
  callgrind_control -d "$1" >/dev/null 2>&1
  sleep 0.5
  local dump; dump=$(ls -t "$work"/callgrind."$1".* | head -1)
  awk -v n="$requests" '/^(summary|totals):/ { printf "%d", $2 / n; exit }' "$dump"
}

declare -A result
say "nginx proxy_pass"
under_callgrind "$proxy_port" nginx -c "$(nginx_conf proxy "$proxy_port" 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";' "$single_process")" -e "$work/proxy.err"
result[b]=$(count "$started" "$proxy_port" / "")
say "bare-proxy"
under_callgrind "$bare_port" target/release/bare-proxy "127.0.0.1:$bare_port" "127.0.0.1:$backend_port"
result[g]=$(count "$started" "$bare_port" / "")
say "spike-proxy"
under_callgrind "$spike_port" target/release/spike-proxy "127.0.0.1:$spike_port" "127.0.0.1:$backend_port"
result[o]=$(count "$started" "$spike_port" / "")
say "Portcullis"
under_callgrind "$portcullis_port" target/release/portcullis run --config "$work/portcullis.toml"
cookie=$(login_as_alice "$portcullis_port" "$idp_port" /rhai)
[[ -n "$cookie" ]] || { echo "login failed" >&2; cat "$work/out-$portcullis_port.log" >&2; exit 1; }
result[d]=$(count "$started" "$portcullis_port" /none "$cookie")
result[s]=$(count "$started" "$portcullis_port" /session "$cookie")
result[e]=$(count "$started" "$portcullis_port" /rhai "$cookie")

printf '| proxy | instructions per request | ÷ nginx |\n|---|---:|---:|\n'
for row in "b nginx proxy_pass" "g bare-proxy (hyper + hyper-util, no logic)" \
           "o spike-proxy (issue #15's spike: hyper server + client in one task, no logic)" "d Portcullis, auth = none" \
           "s Portcullis, session, no policy" "e Portcullis, session + require-group.rhai"; do
  key=${row%% *}
  printf '| %s | %s | %.2f |\n' "${row#* }" "${result[$key]}" "$(python3 -c "print(${result[$key]} / ${result[b]})")"
done
