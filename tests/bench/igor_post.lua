-- wrk script: POSTs Igor-shaped build events (DOMAIN.md section 3), each with
-- a distinct build number, spread over 500 jobs. SG_DELAY_MS (environment)
-- makes each connection wait between requests, for a fixed-rate run.
--
-- wrk runs setup() in its main Lua state and each thread's script in a state
-- of its own; thread:set(name, v) sets the GLOBAL name in the thread's state.
-- So the main state's counter is a local of its own name (next_thread), the
-- thread reads the global thread_id in init(), and no chunk-level local may
-- be called thread_id: it would shadow the global and every thread would
-- start at 0, posting the same build numbers as the others.
local counter = 0
local next_thread = 0
local delay_ms = tonumber(os.getenv("SG_DELAY_MS") or "0")

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
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
