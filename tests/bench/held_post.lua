-- wrk script of tests/bench/bench_held_rss.sh: POSTs Igor build events
-- (DOMAIN.md section 3) of jobs the build index does not know, so a gate in
-- guard mode holds every one of them.
--
-- Request i (0-based, over all threads, from SG_START) is build
-- floor(i / SG_JOBS) + 1 of job "team-h/held-<i % SG_JOBS>" on jenkins-prod,
-- so every (job, number) pair is distinct. Thread t of SG_THREADS (= wrk -t)
-- posts i = SG_START + t * q ... SG_START + (t + 1) * q - 1, q = SG_COUNT /
-- SG_THREADS, then parks its connections and stops its loop once all its
-- requests are answered: a run posts exactly SG_COUNT events. (wrk's main
-- thread still sleeps for -d; SIGINT ends it early and prints the stats.)
--
-- How the count is kept exact. With a delay() function wrk calls it before
-- every request, a connection's first included; it reserves one of the
-- thread's q requests or parks the connection for an hour. request() then
-- takes the next index. wrk also calls request() once in thread 0's state
-- to check the script, before any connection exists: that call comes before
-- any delay() and takes no index.
--
-- wrk runs setup() in its main Lua state and each thread's script in a state
-- of its own; thread:set(name, v) sets the GLOBAL name in the thread's
-- state. So the main state counts with a local of another name (next_thread)
-- and init() reads the global thread_id: a chunk-level local thread_id would
-- shadow it, and every thread would post the same builds.
local function env(name, default)
  return tonumber(os.getenv(name) or default)
end
local start = env("SG_START", "0")
local count = env("SG_COUNT", "100000")
local threads = env("SG_THREADS", "1")
local jobs = env("SG_JOBS", "100000")

local next_thread = 0
local first, quota = start, 1 -- set per thread by init()
local reserved, issued, answered = 0, 0, 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  quota = math.floor(count / threads)
  first = start + thread_id * quota
end

local function event(i)
  local job = "team-h/held-" .. (i % jobs)
  local number = math.floor(i / jobs) + 1
  local body = string.format(
    '{"details":{"type":"build","source":"igor","created":"1427237764257"},' ..
    '"content":{"master":"jenkins-prod","project":{"name":"%s","lastBuild":' ..
    '{"number":%d,"result":"SUCCESS","building":false,"timestamp":"%d",' ..
    '"duration":93000,"url":"https://jenkins/job/%s/%d/"}}}}',
    job, number, 1700000000000 + i, job, number)
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end

function delay()
  if reserved >= quota then
    return 3600000
  end
  reserved = reserved + 1
  return 0
end

function request()
  if reserved == 0 then
    return event(first) -- wrk's check of the script: nothing is sent
  end
  local i = first + issued
  issued = issued + 1
  return event(i)
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= quota then
    wrk.thread:stop()
  end
end
