-- The seed's access phase, written plainly: cookie → session in lua_shared_dict → the seven
-- X-Auth-* headers → group check. (lua-resty-openidc does more per request — JSON-decoding the
-- session and checking token expiry among it — so this is a lower bound of its cost.)
local sid = ngx.var.cookie_session
if not sid then
    return ngx.exit(ngx.HTTP_FORBIDDEN)
end
local record = ngx.shared.sessions:get(sid)
if not record then
    return ngx.exit(ngx.HTTP_FORBIDDEN)
end
local fields = {}
for field in string.gmatch(record, "([^|]*)|?") do
    fields[#fields + 1] = field
end
local sub, username, userid, groups, audience, expires, locale =
    fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7]
ngx.req.set_header("X-Auth-Subject", sub)
ngx.req.set_header("X-Auth-Username", username)
ngx.req.set_header("X-Auth-Userid", userid)
ngx.req.set_header("X-Auth-Groups", groups)
ngx.req.set_header("X-Auth-Audience", audience)
ngx.req.set_header("X-Auth-ExpiresIn", tostring(tonumber(expires) - ngx.time()))
ngx.req.set_header("X-Auth-Locale", locale)
local member = false
for group in string.gmatch(groups, "[^,]+") do
    if group == "admins" then
        member = true
        break
    end
end
if not member then
    return ngx.exit(ngx.HTTP_FORBIDDEN)
end
