-- wrk script for bench/reconcile.py: POST /v1/payment_intents, each naming an order of its own
-- in metadata[service_order_id] (PREFIX, the wrk thread and a counter: unique within a run).
-- Environment: API_KEY, PREFIX.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
local prefix = os.getenv("PREFIX")
local threads = 0
local sent = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function request()
  sent = sent + 1
  wrk.body = "amount=2000&currency=usd&automatic_payment_methods[enabled]=true"
    .. "&automatic_payment_methods[allow_redirects]=never"
    .. "&metadata[service_order_id]=" .. prefix .. thread_id .. "n" .. sent
  return wrk.format()
end

function done(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
