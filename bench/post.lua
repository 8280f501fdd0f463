-- wrk script: POST a fixed form body and report requests/s and latency percentiles as JSON.
-- Environment: BODY (the form body), API_KEY, STOP_AFTER (per-thread request quota, optional).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")

local quota = tonumber(os.getenv("STOP_AFTER") or "0")
local seen = 0
local non2xx = 0

function response(status, headers, body)
  seen = seen + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if quota > 0 and seen >= quota then
    wrk.thread:stop()
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
