-- wrk script: POSTs Igor-shaped build events (DOMAIN.md section 3), each with
-- a distinct build number, spread over 500 jobs. SG_DELAY_MS (environment)
-- makes each connection wait between requests, for a fixed-rate run.
local counter = 0
local thread_id = 0
local delay_ms = tonumber(os.getenv("SG_DELAY_MS") or "0")

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  counter = thread_id * 100000000
end

function request()
  counter = counter + 1
  local job = "team-" .. (counter % 50) .. "/service-" .. (counter % 500)
  local body = string.format(
    '{"details":{"type":"build","source":"igor","created":"1427237764257"},' ..
    '"content":{"master":"jenkins-prod","project":{"name":"%s","lastBuild":' ..
    '{"number":%d,"result":"SUCCESS","building":false,"timestamp":"%d",' ..
    '"duration":93000,"url":"https://jenkins/job/x/%d/"}}}}',
    job, counter, 1700000000000 + counter, counter)
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end
