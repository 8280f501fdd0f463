-- wrk script: POST the lines of the file EVENTS ("<Stripe-Signature>\t<JSON body>") in order to
-- the URL's path, starting again from the first when all are sent (redeliveries); report JSON
-- from `done`. Run it with one thread (-t1) so each event is first delivered once.
local events = {}
for line in io.lines(os.getenv("EVENTS")) do
  local signature, body = line:match("^([^\t]*)\t(.*)$")
  events[#events + 1] = {signature = signature, body = body}
end
local sent = 0

function request()
  sent = sent % #events + 1
  local event = events[sent]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Stripe-Signature"] = event.signature,
  }, event.body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
