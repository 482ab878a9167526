# Shared by run.sh and instructions.sh (sourced): ports, the nginx config template, the Portcullis
# config with the development provider, and logging in as alice. Expects $work to be set.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx_conf ROLE PORT LOCATION [SED-EXPRESSION...] → the path of nginx.conf.in filled in for ROLE.
# Uses $backend_port and ${session_id:-unused}. A ROLE starting with `tls` terminates TLS with
# $work/cert.pem and $work/key.pem (see make_cert) and offers HTTP/2 and HTTP/1.1 (ALPN).
nginx_conf() {
  local role=$1 port=$2 location=$3; shift 3
  mkdir -p "$work/tmp-$role"
  local extra=() listen_tls="" tls=""
  for expression in "$@"; do extra+=(-e "$expression"); done
  if [[ "$role" == tls* ]]; then
    # `http2 on;` from nginx 1.25.1; before it (Debian 12 has 1.22) HTTP/2 is a `listen` flag.
    if printf '%s\n' 1.25.1 "$(nginx_version)" | sort -V -C; then
      listen_tls=" ssl" tls="http2 on; "
    else
      listen_tls=" ssl http2"
    fi
    # TLS 1.3 as Portcullis (nginx before 1.23.4 offers only up to 1.2 unless told).
    tls+="ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;"
  fi
  sed -e "s|@ROLE@|$role|g" -e "s|@WORK@|$work|g" -e "s|@PORT@|$port|g" \
      -e "s|@BACKEND_PORT@|$backend_port|g" -e "s|@SESSION_ID@|${session_id:-unused}|g" \
      -e "s|@LISTEN_TLS@|$listen_tls|" -e "s|@TLS@|$tls|" \
      -e "s|@LOCATION@|$location|" "${extra[@]}" benches/load/nginx.conf.in > "$work/nginx-$role.conf"
  echo "$work/nginx-$role.conf"
}

nginx_version() { nginx -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p'; }

# make_cert → a self-signed P-256 certificate for 127.0.0.1 and localhost in $work/cert.pem, its
# key in $work/key.pem (PKCS#8): what nginx and Portcullis both terminate TLS with.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
}

# portcullis_config PORT IDP_PORT [SCHEME] [STORE] → the [server]…[session] part of a config with
# the development provider (no access log, as nginx in these runs); routes follow. SCHEME `https`
# terminates TLS with make_cert's certificate. The session store is the port's own sled folder, so
# two instances can run side by side; STORE replaces it (e.g. the lines of a Redis store).
portcullis_config() {
  local scheme=${3:-http} store=${4:-path = \"$work/sessions-$1\"}
  cat <<TOML
[server]
listen = "127.0.0.1:$1"
[log]
level = "warn"
[dev_idp]
listen = "127.0.0.1:$2"
[oidc]
client_id = "load"
client_secret = "load-secret"
redirect_uri = "$scheme://127.0.0.1:$1/auth"
[session]
$store
cookie_name = "session"
cookie_secure = false
TOML
  if [[ "$scheme" == https ]]; then
    printf '[server.tls]\ncert = "%s"\nkey = "%s"\n' "$work/cert.pem" "$work/key.pem"
  fi
}

# login_as_alice PORT IDP_PORT PATH [SCHEME] → "session=…" for alice, logged in through the
# provider's form (retried until discovery is done: the proxy answers 503 before). Empty when the
# login failed. The certificate of an `https` proxy is not checked (make_cert's is self-signed).
login_as_alice() {
  local jar=$work/cookies-$1.txt authorize="" callback scheme=${4:-http}
  for _ in $(seq 300); do
    authorize=$(curl -sk -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{redirect_url}' "$scheme://127.0.0.1:$1$3")
    [[ -n "$authorize" ]] && break
    sleep 0.2
  done
  callback=$(curl -s -o /dev/null -w '%{redirect_url}' --data "${authorize#*\?}&username=alice&password=alice" "http://127.0.0.1:$2/authorize")
  curl -sk -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' "$callback"
  awk '$6 == "session" { print "session=" $7 }' "$jar"
}

# The routes every Portcullis of these runs serves: /none (no login) and /rhai (a session and
# require-group.rhai for the group admins). Uses $backend_port and $repo.
common_routes() {
  cat <<TOML
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
TOML
}
