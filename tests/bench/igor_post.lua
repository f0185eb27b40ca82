-- wrk script: POSTs Igor-shaped build events (DOMAIN.md section 3), each with
-- a distinct build number, spread over 500 jobs. SG_DELAY_MS (environment)
-- makes each connection wait between requests, for a fixed-rate run.
-- SG_DOCKER_PCT (0 to 100) makes that share of the requests Igor Docker
-- events instead, each a distinct tag of 200 repositories of 5 accounts.
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
local docker_pct = tonumber(os.getenv("SG_DOCKER_PCT") or "0")

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

-- SG_RUN (environment): a run number (0 to 9), so that the runs of one gate
-- post builds of their own instead of replaying the last run's; SG_PART (0
-- to 9): the wrk process among several posting at once (to the replicas of
-- one gate, tests/bench/lib.sh wrk_spread), each with builds of its own of
-- the same jobs. Each thread of a run and part numbers up to 10 million
-- builds of its own.
local run = tonumber(os.getenv("SG_RUN") or "0")
local part = tonumber(os.getenv("SG_PART") or "0")

function init(args)
  counter = part * 1000000000 + thread_id * 100000000 + run * 10000000
end

function request()
  counter = counter + 1
  if counter % 100 < docker_pct then
    local repo = "team/app-" .. (counter % 200)
    local body = string.format(
      '{"details":{"type":"docker","source":"igor"},"content":{"account":"acct-%d",' ..
      '"registry":"registry.example","repository":"%s","tag":"v%d","digest":' ..
      '"sha256:%s"},"artifact":{"type":"docker","name":"%s","version":"v%d",' ..
      '"reference":"registry.example/%s:v%d"}}',
      counter % 5, repo, counter, string.rep("0", 54) .. tostring(counter % 10000000000),
      repo, counter, repo, counter)
    return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
  end
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
