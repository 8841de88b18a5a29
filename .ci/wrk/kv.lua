-- wrk script for .ci/bench-vs-etcd: the same closed-loop key-value load
-- against iroh-raft (the kv guest) and etcd (its JSON gateway).
--
--   wrk -t T -c C -d 10s -s .ci/wrk/kv.lua URL -- MODE KEY_SPACE VALUE_BYTES [AUTH]
--
-- MODE: raft-put    POST /v1/propose {"command":"put <key> <value>"}
--       raft-get    POST /v1/query   {"request":"get <key>","consistency":"linearizable"}
--       etcd-put    POST /v3/kv/put   {"key":b64,"value":b64}
--       etcd-get    POST /v3/kv/range {"key":b64} (linearizable: etcd's default)
-- Keys are "k" and 9 digits (10 bytes), uniform over KEY_SPACE; values are
-- VALUE_BYTES of "v". wrk keeps each connection alive with one request in
-- flight. Any answer other than 200 is an error (wrk itself counts only
-- status > 399, and only in its summary): response() counts them per
-- thread, done() prints one parseable line:
--   RESULT requests=N non200=N connect=N read=N write=N timeout=N
--          duration_us=N p50_us=N p90_us=N p99_us=N p999_us=N max_us=N

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
      .. (b and b64chars:sub(c3 + 1, c3 + 1) or "=")
      .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

function init(args)
  mode = args[1]
  key_space = tonumber(args[2])
  local value_bytes = tonumber(args[3])
  if mode == nil or key_space == nil or value_bytes == nil then
    error("usage: -- MODE KEY_SPACE VALUE_BYTES [AUTH]")
  end
  value = string.rep("v", value_bytes)
  value64 = base64(value)
  non200 = 0
  headers = { ["Content-Type"] = "application/json" }
  if args[4] ~= nil and args[4] ~= "" then
    headers["Authorization"] = "Bearer " .. args[4]
  end
  math.randomseed(id * 7919 + os.time())
  local known = { ["raft-put"] = true, ["raft-get"] = true, ["etcd-put"] = true, ["etcd-get"] = true }
  if not known[mode] then
    error("unknown mode " .. mode)
  end
end

function request()
  local key = string.format("k%09d", math.random(0, key_space - 1))
  local path, body
  if mode == "raft-put" then
    path = "/v1/propose"
    body = '{"command":"put ' .. key .. ' ' .. value .. '"}'
  elseif mode == "raft-get" then
    path = "/v1/query"
    body = '{"request":"get ' .. key .. '","consistency":"linearizable"}'
  elseif mode == "etcd-put" then
    path = "/v3/kv/put"
    body = '{"key":"' .. base64(key) .. '","value":"' .. value64 .. '"}'
  else
    path = "/v3/kv/range"
    body = '{"key":"' .. base64(key) .. '"}'
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d non200=%d connect=%d read=%d write=%d timeout=%d "
      .. "duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, bad, e.connect, e.read, e.write, e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
