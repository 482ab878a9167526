# Shared by run.sh and instructions.sh (sourced): ports, the nginx config template, the Portcullis
# config with the development provider, and logging in as alice. Expects $work to be set.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx_conf ROLE PORT LOCATION [SED-EXPRESSION...] → the path of nginx.conf.in filled in for ROLE.
# Uses $backend_port and ${session_id:-unused}.
nginx_conf() {
  local role=$1 port=$2 location=$3; shift 3
  mkdir -p "$work/tmp-$role"
  local extra=()
  for expression in "$@"; do extra+=(-e "$expression"); done
  sed -e "s|@ROLE@|$role|g" -e "s|@WORK@|$work|g" -e "s|@PORT@|$port|g" \
      -e "s|@BACKEND_PORT@|$backend_port|g" -e "s|@SESSION_ID@|${session_id:-unused}|g" \
      -e "s|@LOCATION@|$location|" "${extra[@]}" benches/load/nginx.conf.in > "$work/nginx-$role.conf"
  echo "$work/nginx-$role.conf"
}

# portcullis_config PORT IDP_PORT → the [server]…[session] part of a config with the development
# provider (no access log, as nginx in these runs); routes follow.
portcullis_config() {
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
redirect_uri = "http://127.0.0.1:$1/auth"
[session]
path = "$work/sessions"
cookie_name = "session"
cookie_secure = false
TOML
}

# login_as_alice PORT IDP_PORT PATH → "session=…" for alice, logged in through the provider's form
# (retried until discovery is done: the proxy answers 503 before). Empty when the login failed.
login_as_alice() {
  local jar=$work/cookies.txt authorize="" callback
  for _ in $(seq 300); do
    authorize=$(curl -s -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{redirect_url}' "http://127.0.0.1:$1$3")
    [[ -n "$authorize" ]] && break
    sleep 0.2
  done
  callback=$(curl -s -o /dev/null -w '%{redirect_url}' --data "${authorize#*\?}&username=alice&password=alice" "http://127.0.0.1:$2/authorize")
  curl -s -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' "$callback"
  awk '$6 == "session" { print "session=" $7 }' "$jar"
}
