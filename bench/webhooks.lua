-- wrk script: POST the lines of the file EVENTS ("<Stripe-Signature>\t<JSON body>") in order to
-- the URL's path, starting again from the first when all are sent (redeliveries); report JSON
-- from `done`, with the answers ≥ 500 counted apart. Run it with one thread (-t1) so each event
-- is first delivered once. With ONCE=1, once as many answers as there are lines have come back
-- (a backlog drained; the few posts sent past the end are redeliveries), it reports its counts
-- and exits (wrk itself would wait for -d): the caller times the run.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local events = {}
for line in io.lines(os.getenv("EVENTS")) do
  local signature, body = line:match("^([^\t]*)\t(.*)$")
  events[#events + 1] = {signature = signature, body = body}
end
local once = os.getenv("ONCE") == "1"
local sent = 0
answered = 0
server_errors = 0
refused = 0

function request()
  sent = sent % #events + 1
  local event = events[sent]
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Stripe-Signature"] = event.signature,
  }, event.body)
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 500 then
    server_errors = server_errors + 1
  elseif status >= 400 then
    refused = refused + 1
  end
  if once and answered >= #events then
    io.write(string.format('JSON {"requests": %d, "server_errors": %d, "refused": %d}\n',
      answered, server_errors, refused))
    io.flush()
    os.exit(0)
  end
end

function done(summary, latency, requests)
  local five = 0
  for _, thread in ipairs(threads) do
    five = five + (thread:get("server_errors") or 0)
  end
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d, '
      .. '"server_errors": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), five))
end
