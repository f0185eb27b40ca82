#!/usr/bin/env bash
# snapshot --profile igor: takes only Igor's keys and decodes the build index
# (Jenkins cursors and posted markers, Travis/GitLab numbers, Docker tags);
# --prefix; --match adds patterns; inspect --json shows the namespaces.
source "$SG_TESTS/lib.sh"

start_redis

echo "# 200 Igor Jenkins jobs plus keys that are not Igor's"
seed_igor 200
NIGOR=400
NPOSTED=$((200 * SEED_POSTED_PER_JOB))
pipe_py "
[['SET', 'cache:%d' % i, 'c'] for i in range(10)] + [
 ['EXPIRE', 'cache:%d' % i, 3600] for i in range(4)] + [
 ['SET', 'session:abc', 's'],
 ['HSET', 'igorx:jenkins-prod:JOB:job', 'lastPollCycleTimestamp', '1'],
 ['SET', 'igor', 'not under the prefix'],
 ['HSET', 'spin:jenkins-prod:OTHER:other', 'lastPollCycleTimestamp', '1'],
 ['SET', 'extra:1', 'e'], ['SET', 'extra:2', 'e'],
]"
NOTHER=16
assert_eq $((NIGOR + NOTHER)) "$(rcli dbsize)" "seeded $((NIGOR + NOTHER)) keys"

run sg snapshot --profile igor --json
assert_rc 0 "snapshot --profile igor"
J=$OUT
ID=$(json_get "$J" "d['snapshot_id']")
assert_eq igor "$(json_get "$J" "d['profile']")" "profile igor"
assert_eq $NIGOR "$(json_get "$J" "d['keys']")" "only the $NIGOR igor:* keys are taken"
assert_eq 200 "$(json_get "$J" "d['index']['jobs']")" "index.jobs 200"
assert_eq $NPOSTED "$(json_get "$J" "d['index']['posted']")" "index.posted $NPOSTED"
assert_eq 0 "$(json_get "$J" "d['index']['docker_tags']")" "no docker tags"
assert_eq 0 "$(json_get "$J" "d['undecoded']")" "every igor key decoded"

run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor (text)"
assert_contains "$OUT" "200 jobs" "text output reports the jobs"
assert_contains "$OUT" "$NPOSTED posted" "text output reports the posted builds"

run sg snapshots --json
assert_eq 'igor:*' "$(json_get "$OUT" "[s for s in d['snapshots'] if s['id'] == $ID][0]['selection']")" "selection is igor:*"
assert_eq igor "$(json_get "$OUT" "[s for s in d['snapshots'] if s['id'] == $ID][0]['profile']")" "listed profile igor"

echo "# keys outside igor:* are not in the snapshot"
rcli flushall >/dev/null
run sg restore "$ID" --json
assert_rc 0 "restore of the igor snapshot"
assert_eq $NIGOR "$(json_get "$OUT" "d['restored']")" "restored $NIGOR"
assert_eq $NIGOR "$(rcli dbsize)" "only igor keys came back"
assert_eq 0 "$(rcli exists cache:1 session:abc igorx:jenkins-prod:JOB:job igor spin:jenkins-prod:OTHER:other extra:1)" "no non-igor key came back"
assert_eq 1526030017000 "$(rcli hget 'igor:jenkins-prod:TEAM-A/SERVICE-17:team-a/service-17' lastPollCycleTimestamp)" "a cursor came back"
assert_eq POSTED "$(rcli hget 'igor:jenkins-prod:TEAM-A/SERVICE-17:team-a/service-17:lastPollCycleTimestamp:1526030017000' 117)" "a posted marker came back"

echo "# odd job names, Travis/GitLab and Docker keys, an undecodable key"
pipe_py "
[
 ['HSET', 'igor:jenkins-prod:FOLDER/JOB/CHILD:folder/job/child', 'lastPollCycleTimestamp', '1526030999000'],
 ['HSET', 'igor:jenkins-prod:FOLDER/JOB/CHILD:folder/job/child:lastPollCycleTimestamp:1526030999000', '7', 'POSTED', '8', 'POSTED'],
 ['HSET', 'igor:jenkins-old:TEAM:X:team:x', 'lastPollCycleTimestamp', '1526030998000'],
 ['SET', 'igor:builds:completed:travis-ci:ORG/REPO:org/repo', '42'],
 ['SET', 'igor:builds:running:travis-ci:ORG/REPO:org/repo', '43'],
 ['SET', 'igor:builds:track:travis-ci:ORG/REPO:org/repo:43', 'marked as running', 'EX', 18000],
 ['HSET', 'igor:dockerRegistry:v2:my-account:team/app:1.2.3', 'digest', 'sha256:abc'],
 ['SET', 'igor:jenkins-prod:BROKEN:broken', 'a string where a hash belongs'],
]"
run sg snapshot --profile igor --json
assert_rc 0 "snapshot with every Igor key family"
J=$OUT
assert_eq $((NIGOR + 8)) "$(json_get "$J" "d['keys']")" "all $((NIGOR + 8)) igor keys taken"
assert_eq 203 "$(json_get "$J" "d['index']['jobs']")" "jobs: 200 + folder job + job with ':' + travis job"
assert_eq $((NPOSTED + 2)) "$(json_get "$J" "d['index']['posted']")" "posted includes the folder job's builds"
assert_eq 1 "$(json_get "$J" "d['index']['docker_tags']")" "one docker tag"
assert_eq 1 "$(json_get "$J" "d['undecoded']")" "the string under a cursor name is undecoded"
ID2=$(json_get "$J" "d['snapshot_id']")
# the decoded index itself (DESIGN.md data model: build_index, posted), read
# with python's sqlite3 module
index_query() {
    "$PY" -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for row in c.execute(sys.argv[2], sys.argv[3:]):
    print("|".join(str(v) for v in row))
' "$SG_DB" "$@"
}
assert_eq 1526030998000 "$(index_query "SELECT cursor_ms FROM build_index WHERE snapshot_id = ? AND source = 'jenkins-old' AND job = 'team:x'" "$ID2")" "a job name with ':' is split in the middle"
assert_eq 1526030999000 "$(index_query "SELECT cursor_ms FROM build_index WHERE snapshot_id = ? AND source = 'jenkins-prod' AND job = 'folder/job/child'" "$ID2")" "a folder job's cursor"
assert_eq "7 8" "$(index_query "SELECT number FROM posted WHERE snapshot_id = ? AND job = 'folder/job/child' ORDER BY number" "$ID2" | xargs)" "a folder job's posted builds"
assert_eq 1526030017000 "$(index_query "SELECT cursor_ms FROM build_index WHERE snapshot_id = ? AND source = 'jenkins-prod' AND job = 'team-a/service-17'" "$ID2")" "a seeded job's cursor"
assert_eq "117 118 119" "$(index_query "SELECT number FROM posted WHERE snapshot_id = ? AND source = 'jenkins-prod' AND job = 'team-a/service-17' ORDER BY number" "$ID2" | xargs)" "a seeded job's posted builds"

echo "# --profile igor --match adds patterns"
rcli mset extra:1 e extra:2 e other:1 o >/dev/null
run sg snapshot --profile igor --match 'extra:*' --json
assert_rc 0 "snapshot --profile igor --match extra:*"
assert_eq $((NIGOR + 8 + 2)) "$(json_get "$OUT" "d['keys']")" "igor keys plus the 2 extra keys"
assert_eq 203 "$(json_get "$OUT" "d['index']['jobs']")" "index unchanged by extra keys"

echo "# --prefix spin"
rcli flushall >/dev/null
seed_igor 20 jenkins-prod spin
seed_igor 5 jenkins-prod igor
rcli set spinach:1 x >/dev/null
run sg snapshot --profile igor --prefix spin --json
assert_rc 0 "snapshot --profile igor --prefix spin"
SID=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 40 "$(json_get "$OUT" "d['keys']")" "40 spin:* keys"
assert_eq 20 "$(json_get "$OUT" "d['index']['jobs']")" "index.jobs 20"
assert_eq $((20 * SEED_POSTED_PER_JOB)) "$(json_get "$OUT" "d['index']['posted']")" "index.posted $((20 * SEED_POSTED_PER_JOB))"
run sg snapshots --json
assert_eq 'spin:*' "$(json_get "$OUT" "[s for s in d['snapshots'] if s['id'] == $SID][0]['selection']")" "selection is spin:*"
rcli flushall >/dev/null
run sg restore "$SID" --json
assert_rc 0 "restore of the spin snapshot"
assert_eq 40 "$(rcli dbsize)" "only spin:* keys restored"
assert_eq 0 "$(rcli --scan --pattern 'igor:*' | wc -l)" "no igor:* keys in the spin snapshot"

printf '[profile]\nname = igor\nprefix = spin\n' >"$TMP/spin.ini"
run sg snapshot -c "$TMP/spin.ini" --json
assert_rc 0 "profile and prefix from the config file"
assert_eq 20 "$(json_get "$OUT" "d['index']['jobs']")" "config file prefix spin: 20 jobs"

echo "# inspect --json"
rcli flushall >/dev/null
seed_igor 200
pipe_py "
[['SET', 'cache:%d' % i, 'c'] for i in range(10)] + [
 ['EXPIRE', 'cache:%d' % i, 3600] for i in range(4)] + [
 ['SET', 'session:abc', 's'], ['SET', 'nocolon', 'x'],
]"
run sg inspect --json
assert_rc 0 "inspect --json"
J=$OUT
assert_eq 412 "$(json_get "$J" "d['keys']")" "inspect counts every key"
assert_eq $NIGOR "$(json_get "$J" "{n['namespace']: n['keys'] for n in d['namespaces']}['igor']")" "namespace igor: $NIGOR keys"
assert_eq 10 "$(json_get "$J" "{n['namespace']: n['keys'] for n in d['namespaces']}['cache']")" "namespace cache: 10 keys"
assert_eq 4 "$(json_get "$J" "{n['namespace']: n['with_ttl'] for n in d['namespaces']}['cache']")" "cache: 4 keys with a TTL"
assert_eq 1 "$(json_get "$J" "{n['namespace']: n['keys'] for n in d['namespaces']}['session']")" "namespace session: 1 key"
assert_eq 412 "$(json_get "$J" "sum(n['keys'] for n in d['namespaces'])")" "namespace counts add up"
assert_eq igor "$(json_get "$J" "d['namespaces'][0]['namespace']")" "largest namespace first"
assert_contains "$(json_get "$J" "d['server']['redis_version']")" "7." "server version reported"
assert_eq 0 "$(json_get "$J" "d['db']")" "db 0"

run sg inspect
assert_rc 0 "inspect (text)"
assert_contains "$OUT" "igor" "text output names the igor namespace"
assert_contains "$OUT" "412 keys" "text output gives the key count"
rcli config set maxmemory 200mb >/dev/null
rcli config set maxmemory-policy allkeys-lru >/dev/null
run sg inspect --json
assert_eq allkeys-lru "$(json_get "$OUT" "d['server']['maxmemory_policy']")" "eviction policy reported"
assert_eq $((200 << 20)) "$(json_get "$OUT" "d['server']['maxmemory']")" "maxmemory reported"
run sg inspect
assert_contains "$OUT" "warning: allkeys-lru may evict" "text output warns about an evicting policy"
rcli config set maxmemory 0 >/dev/null
rcli config set maxmemory-policy noeviction >/dev/null

echo "# inspect of an empty database"
rcli flushall >/dev/null
run sg inspect --json
assert_rc 0 "inspect --json of an empty database"
assert_eq 0 "$(json_get "$OUT" "d['keys']")" "0 keys"
assert_eq "[]" "$(json_get "$OUT" "d['namespaces']")" "no namespaces"

finish
