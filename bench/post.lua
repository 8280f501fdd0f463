-- wrk script: POST a fixed body (JSON or a form) and report requests/s and latency percentiles
-- as JSON (errors include every answer with a status of 400 or more).
-- Environment: BODY, API_KEY (optional: sent as a Bearer token when set), CONTENT_TYPE
-- (optional, default application/json), IDEMPOTENCY_PREFIX (optional: each request then
-- carries its own `Idempotency-Key: <prefix>-<thread>-<n>`, as a careful client sends).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
local key = os.getenv("API_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local prefix = os.getenv("IDEMPOTENCY_PREFIX")
local threads = 0
local sent = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

if prefix and prefix ~= "" then
  function request()
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = prefix .. "-" .. thread_id .. "-" .. sent
    return wrk.format()
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
