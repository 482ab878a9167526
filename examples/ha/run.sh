#!/usr/bin/env bash
# Two Portcullis instances sharing their sessions in Redis, behind HAProxy, on one machine:
#
#   browser ──► HAProxy :8080 ──┬──► Portcullis a :8091 ──┬──► Redis :8110 (sessions, locks)
#                (round robin,  └──► Portcullis b :8092 ──┘
#                 /readyz checks)          │   └──► demo backend :8082 (shows the identity headers)
#                                          └──► development identity provider :8081
#
#   examples/ha/run.sh            starts everything; open http://127.0.0.1:8080/ and sign in as
#                                 alice / alice. Every answer says which instance served it
#                                 (X-Served-By); Ctrl-C stops everything.
#   examples/ha/run.sh --check    starts everything, logs in through HAProxy with curl, shows that
#                                 both instances serve the session, kills one (kill -9), shows the
#                                 other carrying on, logs out, and stops. Exit status 0 when all held.
#
# Installs redis-server and haproxy (Debian) when missing. Uses target/release/portcullis (built
# when missing), or the binary in $PORTCULLIS_BIN. Ports start at $HA_BASE_PORT (default 8080).
set -euo pipefail
cd "$(dirname "$0")/../.."
check=false
[[ "${1:-}" == "--check" ]] && check=true

say() { printf '== %s\n' "$*" >&2; }
if ! command -v redis-server >/dev/null || ! command -v haproxy >/dev/null; then
  say "installing redis-server and haproxy"
  apt-get update -q && apt-get install -y -q --no-install-recommends redis-server haproxy
fi
portcullis=${PORTCULLIS_BIN:-target/release/portcullis}
if [[ -z "${PORTCULLIS_BIN:-}" ]]; then
  say "building Portcullis (release)"
  cargo build --release --locked -p portcullis --bin portcullis
fi

base=${HA_BASE_PORT:-8080}
front=$base idp=$((base + 1)) backend=$((base + 2)) idp_rp=$((base + 3))
a=$((base + 11)) b=$((base + 12)) admin_a=$((base + 21)) admin_b=$((base + 22)) redis=$((base + 30))
work=$(mktemp -d /tmp/portcullis-ha-XXXXXX)
declare -A pid=()
cleanup() {
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Redis: sessions must not be evicted (every Portcullis key has a TTL, so volatile-* would do too),
# and are kept across a Redis restart (append-only file).
redis-server --port "$redis" --bind 127.0.0.1 --dir "$work" --appendonly yes --save '' \
  --maxmemory 256mb --maxmemory-policy noeviction --logfile "$work/redis.log" &
pid[redis]=$!

# The demo backend: answers with the identity headers it received, as JSON.
python3 - "$backend" <<'PY' &
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = {k: v for k, v in self.headers.items() if k.lower().startswith("x-auth-")}
        body = json.dumps({"path": self.path, "identity_headers": seen}, indent=1).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
pid[backend]=$!

# One secret seals the sessions of both instances: written once, given to both.
(umask 077; head -c 32 /dev/urandom | base64 > "$work/session.key")

# The development identity provider runs in a Portcullis of its own, so that killing an instance
# does not take the provider with it. It registers the client both instances are.
client='client_id = "portcullis-ha"
client_secret = "ha-demo-secret"
redirect_uri = "http://127.0.0.1:'$front'/auth"
post_logout_redirect_uri = "http://127.0.0.1:'$front'/public"'
cat > "$work/idp.toml" <<TOML
[server]
listen = "127.0.0.1:$idp_rp"
[dev_idp]
listen = "127.0.0.1:$idp"
[oidc]
$client
[session]
store = "memory"
cookie_secure = false
[[routes]]
name = "nothing-here"
auth = "none"
upstream = "http://127.0.0.1:$backend"
TOML
"$portcullis" run --config "$work/idp.toml" > "$work/idp.out" 2> "$work/idp.log" &
pid[idp]=$!

# The two instances: the same config but for their addresses. redirect_uri is HAProxy's address:
# a login may start on one instance and come back to the other.
for name in a b; do
  listen=${!name} admin_var=admin_$name
  cat > "$work/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$listen"
admin_listen = "127.0.0.1:${!admin_var}"
[oidc]
discovery = "http://127.0.0.1:$idp/.well-known/openid-configuration"
$client
[session]
store = "redis"
redis_url = "redis://127.0.0.1:$redis"
secret_file = "$work/session.key"
cookie_secure = false
[[routes]]
name = "public"
path = "/public"
auth = "none"
upstream = "http://127.0.0.1:$backend"
[[routes]]
name = "home"
path = "/"
upstream = "http://127.0.0.1:$backend"
TOML
  "$portcullis" run --config "$work/$name.toml" > "$work/$name.out" 2> "$work/$name.log" &
  pid[$name]=$!
done

# HAProxy: round robin over both, health-checked on their /readyz; a request refused by an
# instance that just died is sent to the other (redispatch).
cat > "$work/haproxy.cfg" <<CFG
global
  log stderr format raw local0 notice
defaults
  mode http
  log global
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch 1
frontend web
  bind 127.0.0.1:$front
  default_backend portcullis
  http-response set-header X-Served-By %[srv_name]
backend portcullis
  balance roundrobin
  option httpchk GET /readyz
  server a 127.0.0.1:$a check port $admin_a inter 500ms fall 2 rise 1
  server b 127.0.0.1:$b check port $admin_b inter 500ms fall 2 rise 1
CFG
haproxy -f "$work/haproxy.cfg" -db 2> "$work/haproxy.log" &
pid[haproxy]=$!

say "waiting for both instances to be ready"
for port in "$admin_a" "$admin_b"; do
  for _ in $(seq 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" == 200 ]] && continue 2
    sleep 0.1
  done
  echo "an instance did not become ready; its log:" >&2; tail -n 20 "$work"/[ab].log >&2; exit 1
done
# …and for HAProxy to see both up (its checks run every 500 ms): both answer /public through it.
seen=""
for _ in $(seq 100); do
  seen+=" $(curl -s -o /dev/null -D - "http://127.0.0.1:$front/public" | awk 'tolower($1) == "x-served-by:" { print $2 }' | tr -d '\r')"
  [[ "$seen" == *" a"* && "$seen" == *" b"* ]] && break
  sleep 0.1
done

if ! $check; then
  cat >&2 <<TEXT

Open http://127.0.0.1:$front/ and sign in as alice / alice (or bob / bob). Each answer's
X-Served-By header names the instance that served it; reload to see both serve your session.
Kill one (kill -9 ${pid[a]} for a, ${pid[b]} for b): the other carries on. /logout ends the
session on both. Ctrl-C stops everything.
TEXT
  wait "${pid[haproxy]}"
  exit
fi

jar=$work/cookies.txt
fail() { echo "ha check failed: $*" >&2; for f in a b idp haproxy; do echo "--- $f.log" >&2; tail -n 15 "$work/$f.log" >&2; done; exit 1; }
get() { curl -s -b "$jar" -c "$jar" -H 'Accept: text/html' "$@"; }

say "logging in as alice through HAProxy"
authorize=$(get -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$front/")
[[ "$authorize" == "http://127.0.0.1:$idp/authorize?"* ]] || fail "not sent to the provider: $authorize"
callback=$(curl -s -o /dev/null -w '%{redirect_url}' --data "${authorize#*\?}&username=alice&password=alice" "http://127.0.0.1:$idp/authorize")
[[ "$callback" == "http://127.0.0.1:$front/auth?"* ]] || fail "the provider did not send back to HAProxy: $callback"
back=$(get -o /dev/null -w '%{http_code} %{redirect_url}' "$callback")
[[ "$back" == "302 http://127.0.0.1:$front/" ]] || fail "the callback answered $back"

served=""
for n in 1 2 3 4; do
  answer=$(get -D "$work/headers-$n" "http://127.0.0.1:$front/")
  grep -qi '"x-auth-username": "alice"' <<<"$answer" || fail "request $n has no identity: $answer"
  served+=" $(awk 'tolower($1) == "x-served-by:" { print $2 }' "$work/headers-$n" | tr -d '\r')"
done
say "alice's session served by:$served"
[[ "$served" == *a* && "$served" == *b* ]] || fail "not both instances served the session:$served"

say "kill -9 of instance a"
{ kill -9 "${pid[a]}"; wait "${pid[a]}"; } 2>/dev/null || true
unset 'pid[a]'
for n in 1 2 3 4; do
  answer=$(get "http://127.0.0.1:$front/")
  grep -qi '"x-auth-username": "alice"' <<<"$answer" || fail "after a was killed, request $n: $answer"
done
say "instance b carries on with alice's session"

status=$(get -o /dev/null -w '%{http_code}' "http://127.0.0.1:$front/logout")
[[ "$status" == 302 ]] || fail "logout answered $status"
status=$(get -o /dev/null -w '%{http_code}' "http://127.0.0.1:$front/")
[[ "$status" == 302 ]] || fail "after logout / answered $status, not a login redirect"
say "logged out; the next request is sent to log in"
echo "ha check: ok"
