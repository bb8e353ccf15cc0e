-- POST /api/make-payment for wrk, with a different phone number on every request.
--
--   wrk -t2 -c50 -d10s --latency -s bench/lua/make_payment.lua \
--       http://127.0.0.1:8000/api/make-payment -- <movieId> <last4> [quantity]
--
-- The Daraja simulator picks the outcome from the phone's last four digits: 9003 = push
-- accepted and no callback ("callbacks off"), 4149 = paid, with a callback after the delay.
-- Phones are 07NNNN<last4>: NNNN walks 0000-9999 with the threads interleaved, so no two
-- requests share a number until 10,000 have been sent.
--
-- done() prints one "status <code> <count>" line per HTTP status, which bench/wrk.py reads:
-- wrk itself only counts "Non-2xx or 3xx responses".

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_index", #threads - 1)
   for _, each in ipairs(threads) do
      each:set("thread_count", #threads)
   end
end

function init(args)
   movie_id = tonumber(args[1]) or 1
   last4 = args[2] or "9003"
   quantity = tonumber(args[3]) or 1
   sent = 0
   statuses = {}
   headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
end

function request()
   local n = (sent * thread_count + thread_index) % 10000
   sent = sent + 1
   local body = string.format(
      '{"movieId":%d,"customerName":"Bench Customer","phoneNumber":"07%04d%s","quantity":%d}',
      movie_id, n, last4, quantity
   )
   return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      for code, count in pairs(thread:get("statuses") or {}) do
         totals[code] = (totals[code] or 0) + count
      end
   end
   for code, count in pairs(totals) do
      io.write(string.format("status %d %d\n", code, count))
   end
end
