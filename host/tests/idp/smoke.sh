#!/usr/bin/env bash
# Smoke test for the Portcullis test IdP: starts provider.js on a free port
# and drives one full login (login form -> consent form -> code), the code
# exchange, a refresh_token grant, /test/stats, and RP-initiated logout with
# curl only. Exits non-zero on the first failure.
#
# Needs: node (>= 20), curl, and `npm ci` run in this folder.
set -euo pipefail

cd "$(dirname "$0")"
[ -d node_modules/oidc-provider ] || { echo "run 'npm ci' in $(pwd) first" >&2; exit 2; }

CLIENT_ID=portcullis
CLIENT_SECRET=s3cret
REDIRECT_URI=http://127.0.0.1:5555/auth
POST_LOGOUT_URI=http://127.0.0.1:5555/
export IDP_PORT=0
export IDP_AUTO_PROMPT_CONSENT=1  # this script sends no prompt=consent itself
export IDP_CLIENTS='[{"client_id":"portcullis","client_secret":"s3cret","redirect_uris":["http://127.0.0.1:5555/auth"],"post_logout_redirect_uris":["http://127.0.0.1:5555/"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_basic"}]'

WORK=$(mktemp -d)
JAR="$WORK/cookies.txt"
IDP_PID=
cleanup() {
  if [ -n "$IDP_PID" ] && kill -0 "$IDP_PID" 2>/dev/null; then
    kill -TERM "$IDP_PID" 2>/dev/null || true
    wait "$IDP_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "FAIL: $*" >&2; [ -f "$WORK/idp.err" ] && sed 's/^/  idp stderr: /' "$WORK/idp.err" >&2; exit 1; }
ok() { echo "ok: $*"; }

# json FILE EXPR : evaluate a JS expression over the parsed JSON `j`.
json() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const v=('"$2"'); process.stdout.write(v===undefined||v===null?"":typeof v==="string"?v:JSON.stringify(v));' -- "$1"; }
# jwt_payload JWT : print the decoded JSON payload of a JWT.
jwt_payload() { node -e 'process.stdout.write(Buffer.from(process.argv[1].split(".")[1],"base64url").toString())' -- "$1"; }
# header_value FILE NAME : value of a response header (case-insensitive).
header_value() { tr -d '\r' < "$1" | awk -v n="$(echo "$2" | tr 'A-Z' 'a-z')" 'BEGIN{FS=": "} tolower($1)==n {sub(/^[^:]*: /,""); print; exit}'; }
status_of() { head -n1 "$1" | awk '{print $2}'; }

# ---------------------------------------------------------------- start IdP
node provider.js > "$WORK/idp.out" 2> "$WORK/idp.err" &
IDP_PID=$!
for _ in $(seq 1 100); do
  grep -q '^idp listening on ' "$WORK/idp.out" 2>/dev/null && break
  kill -0 "$IDP_PID" 2>/dev/null || die "provider.js exited early"
  sleep 0.1
done
ISSUER=$(sed -n 's/^idp listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/idp.out")
[ -n "$ISSUER" ] || die "no 'idp listening on' line"
[ "$(wc -l < "$WORK/idp.out")" -eq 1 ] || die "stdout has more than one line"
ok "issuer $ISSUER"

C="curl -sS -b $JAR -c $JAR"

# --------------------------------------------------------------- discovery
$C -o "$WORK/disc.json" "$ISSUER/.well-known/openid-configuration"
[ "$(json "$WORK/disc.json" 'j.issuer')" = "$ISSUER" ] || die "discovery issuer mismatch"
[ "$(json "$WORK/disc.json" 'j.end_session_endpoint')" = "$ISSUER/session/end" ] || die "no end_session_endpoint"
[ "$(json "$WORK/disc.json" 'j.revocation_endpoint')" = "$ISSUER/token/revocation" ] || die "no revocation_endpoint"
$C -o "$WORK/jwks.json" "$ISSUER/jwks"
[ "$(json "$WORK/jwks.json" 'j.keys[0].kty + "/" + j.keys[0].alg + "/" + Boolean(j.keys[0].kid) + "/" + Boolean(j.keys[0].d)')" = "RSA/RS256/true/false" ] \
  || die "jwks does not hold one public RS256 key with kid"
ok "discovery + jwks"

# --------------------------------------------------------------- PKCE S256
VERIFIER=$(node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))')
CHALLENGE=$(node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' -- "$VERIFIER")
STATE=st-$RANDOM$RANDOM
NONCE=n-$RANDOM$RANDOM

# 1. authorization request -> 303 /interaction/<uid>
AUTH_URL="$ISSUER/auth?client_id=$CLIENT_ID&response_type=code&redirect_uri=$(node -p 'encodeURIComponent(process.argv[1])' -- "$REDIRECT_URI")&scope=openid%20email%20profile%20groups%20offline_access&state=$STATE&nonce=$NONCE&code_challenge=$CHALLENGE&code_challenge_method=S256"
$C -o /dev/null -D "$WORK/h1" "$AUTH_URL"
[ "$(status_of "$WORK/h1")" = 303 ] || die "authorize: expected 303, got $(status_of "$WORK/h1")"
LOC=$(header_value "$WORK/h1" location)
case "$LOC" in /interaction/*) ;; *) die "authorize: unexpected Location $LOC" ;; esac
ok "authorize -> $LOC"

# 2. login page (GET) and login form POST (prompt=login, login, password)
$C -o "$WORK/login.html" "$ISSUER$LOC"
grep -q 'name="prompt" value="login"' "$WORK/login.html" || die "login form not rendered"
$C -o /dev/null -D "$WORK/h2" -X POST --data-urlencode prompt=login --data-urlencode login=alice --data-urlencode password=anything "$ISSUER$LOC"
[ "$(status_of "$WORK/h2")" = 303 ] || die "login POST: expected 303, got $(status_of "$WORK/h2")"
LOC=$(header_value "$WORK/h2" location)
case "$LOC" in "$ISSUER"/auth/*) ;; *) die "login POST: unexpected Location $LOC" ;; esac
ok "login -> $LOC"

# 3. resume authorization -> 303 /interaction/<uid2> (consent)
$C -o /dev/null -D "$WORK/h3" "$LOC"
[ "$(status_of "$WORK/h3")" = 303 ] || die "resume after login: expected 303, got $(status_of "$WORK/h3")"
LOC=$(header_value "$WORK/h3" location)
case "$LOC" in /interaction/*) ;; *) die "resume after login: unexpected Location $LOC" ;; esac
ok "resume -> $LOC (consent)"

# 4. consent page (GET) and consent form POST (prompt=consent)
$C -o "$WORK/consent.html" "$ISSUER$LOC"
grep -q 'name="prompt" value="consent"' "$WORK/consent.html" || die "consent form not rendered"
$C -o /dev/null -D "$WORK/h4" -X POST --data-urlencode prompt=consent "$ISSUER$LOC"
[ "$(status_of "$WORK/h4")" = 303 ] || die "consent POST: expected 303, got $(status_of "$WORK/h4")"
LOC=$(header_value "$WORK/h4" location)
case "$LOC" in "$ISSUER"/auth/*) ;; *) die "consent POST: unexpected Location $LOC" ;; esac
ok "consent -> $LOC"

# 5. resume authorization -> 303 redirect_uri?code=..&state=..&iss=..
$C -o /dev/null -D "$WORK/h5" "$LOC"
[ "$(status_of "$WORK/h5")" = 303 ] || die "final resume: expected 303, got $(status_of "$WORK/h5")"
LOC=$(header_value "$WORK/h5" location)
case "$LOC" in "$REDIRECT_URI?"*) ;; *) die "final redirect: unexpected Location $LOC" ;; esac
CODE=$(node -p 'new URL(process.argv[1]).searchParams.get("code")' -- "$LOC")
GOT_STATE=$(node -p 'new URL(process.argv[1]).searchParams.get("state")' -- "$LOC")
[ "$GOT_STATE" = "$STATE" ] || die "state mismatch: $GOT_STATE"
[ -n "$CODE" ] && [ "$CODE" != null ] || die "no code in $LOC"
ok "redirect -> $REDIRECT_URI with code and state"

grep -q $'\t_session\t' "$JAR" || die "no _session cookie"

# 6. code exchange (client_secret_basic + code_verifier)
curl -sS -o "$WORK/tok.json" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" \
  "$ISSUER/token"
json "$WORK/tok.json" 'j.access_token && j.id_token && j.refresh_token ? "" : (()=>{throw new Error("token response: "+JSON.stringify(j))})()' >/dev/null \
  || die "token response lacks access_token/id_token/refresh_token: $(cat "$WORK/tok.json")"
ID_TOKEN=$(json "$WORK/tok.json" 'j.id_token')
jwt_payload "$ID_TOKEN" > "$WORK/idt.json"
CHECK=$(json "$WORK/idt.json" '[j.iss, j.aud, j.sub, j.nonce, j.preferred_username, j.name, j.locale, j.email, JSON.stringify(j.groups)].join("|")')
EXPECT="$ISSUER|$CLIENT_ID|alice|$NONCE|alice|Alice|en-GB|alice@example.com|[\"admins\",\"staff\"]"
[ "$CHECK" = "$EXPECT" ] || die "id_token claims: got $CHECK, want $EXPECT ($(cat "$WORK/idt.json"))"
ok "code exchange: id_token claims $(cat "$WORK/idt.json")"
REFRESH=$(json "$WORK/tok.json" 'j.refresh_token')
ACCESS=$(json "$WORK/tok.json" 'j.access_token')

# 7. userinfo with the access token
curl -sS -o "$WORK/ui.json" -H "Authorization: Bearer $ACCESS" "$ISSUER/me"
[ "$(json "$WORK/ui.json" 'j.sub + "|" + j.groups.join(",")')" = "alice|admins,staff" ] || die "userinfo: $(cat "$WORK/ui.json")"
ok "userinfo"

# 8. refresh_token grant
curl -sS -o "$WORK/ref.json" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH" \
  "$ISSUER/token"
json "$WORK/ref.json" 'j.access_token && j.id_token ? "" : (()=>{throw new Error()})()' >/dev/null \
  || die "refresh response: $(cat "$WORK/ref.json")"
[ "$(json "$WORK/ref.json" 'JSON.stringify(JSON.parse(Buffer.from(j.id_token.split(".")[1],"base64url")).groups)')" = '["admins","staff"]' ] \
  || die "refreshed id_token lacks groups"
NEW_REFRESH=$(json "$WORK/ref.json" 'j.refresh_token || ""')
ok "refresh grant (refresh_token rotated: $([ -z "$NEW_REFRESH" ] || [ "$NEW_REFRESH" = "$REFRESH" ] && echo no || echo yes))"
CUR_REFRESH=${NEW_REFRESH:-$REFRESH}

# 9. stats
$C -o "$WORK/stats.json" "$ISSUER/test/stats"
[ "$(json "$WORK/stats.json" 'j.token_requests + "/" + j.refresh_requests')" = "2/1" ] || die "stats: $(cat "$WORK/stats.json")"
ok "stats $(cat "$WORK/stats.json")"

# 10. RP-initiated logout: GET end_session -> 200 confirmation page with xsrf;
#     POST /session/end/confirm xsrf=..&logout=yes -> 303 post_logout_redirect_uri?state=..
$C -o "$WORK/logout.html" -D "$WORK/h6" "$ISSUER/session/end?id_token_hint=$ID_TOKEN&post_logout_redirect_uri=$(node -p 'encodeURIComponent(process.argv[1])' -- "$POST_LOGOUT_URI")&state=bye"
[ "$(status_of "$WORK/h6")" = 200 ] || die "end_session: expected 200, got $(status_of "$WORK/h6")"
XSRF=$(sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' "$WORK/logout.html" | head -n1)
[ -n "$XSRF" ] || die "no xsrf in logout page"
grep -q "action=\"$ISSUER/session/end/confirm\"" "$WORK/logout.html" || die "logout form action not found"
$C -o /dev/null -D "$WORK/h7" -X POST --data-urlencode "xsrf=$XSRF" --data-urlencode logout=yes "$ISSUER/session/end/confirm"
[ "$(status_of "$WORK/h7")" = 303 ] || die "logout confirm: expected 303, got $(status_of "$WORK/h7")"
LOC=$(header_value "$WORK/h7" location)
[ "$LOC" = "${POST_LOGOUT_URI}?state=bye" ] || die "logout confirm: unexpected Location $LOC"
ok "logout -> $LOC"

# The offline_access grant survives RP-initiated logout (oidc-provider marks
# it persistsLogout), so the refresh token still works after logout ...
curl -sS -o "$WORK/ref2.json" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$CUR_REFRESH" \
  "$ISSUER/token"
[ -n "$(json "$WORK/ref2.json" 'j.access_token')" ] || die "refresh after logout: $(cat "$WORK/ref2.json")"
CUR_REFRESH=$(json "$WORK/ref2.json" 'j.refresh_token'); CUR_REFRESH=${CUR_REFRESH:-$REFRESH}
ok "refresh after logout still works (offline_access)"

# ... until it is revoked at the revocation endpoint (200, empty body).
$C -o /dev/null -D "$WORK/h8" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode "token=$CUR_REFRESH" --data-urlencode token_type_hint=refresh_token \
  "$ISSUER/token/revocation"
[ "$(status_of "$WORK/h8")" = 200 ] || die "revocation: expected 200, got $(status_of "$WORK/h8")"
curl -sS -o "$WORK/ref3.json" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$CUR_REFRESH" \
  "$ISSUER/token"
[ "$(json "$WORK/ref3.json" 'j.error')" = invalid_grant ] || die "refresh after revocation should fail: $(cat "$WORK/ref3.json")"
ok "revocation -> refresh gives invalid_grant"

# After logout the IdP session is gone: a new authorization request goes to
# the login form again.
$C -o /dev/null -D "$WORK/h9" "$AUTH_URL"
LOC=$(header_value "$WORK/h9" location)
$C -o "$WORK/login2.html" "$ISSUER$LOC"
grep -q 'name="prompt" value="login"' "$WORK/login2.html" || die "after logout, expected the login form again"
ok "after logout the next authorization shows the login form"

$C -o "$WORK/stats.json" "$ISSUER/test/stats"
[ "$(json "$WORK/stats.json" 'j.token_requests + "/" + j.refresh_requests')" = "4/3" ] || die "stats: $(cat "$WORK/stats.json")"
ok "stats $(cat "$WORK/stats.json")"

# 11. SIGTERM -> clean exit 0
kill -TERM "$IDP_PID"
rc=0; wait "$IDP_PID" || rc=$?
IDP_PID=
[ "$rc" = 0 ] || die "provider exit status $rc after SIGTERM"
ok "SIGTERM -> exit 0"
echo "smoke: all steps passed"
