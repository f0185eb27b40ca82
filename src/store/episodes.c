/* Episodes and the audit log in the store (episodes.h): the record of what
 * happened to the poller's Redis and what operators did about it. */
#include "stormguard/store/episodes.h"

#include <sqlite3.h>

#include "stormguard/base/util.h"
#include "store_pg_int.h"
#include "store_int.h"

int sg_store_episode_open(sg_store *s, int64_t at, const char *cause, const char *detail,
                          int64_t *id, sg_error *err)
{
    if (s->pg)
        return sg_pg_episode_open(s->pg, at, cause, detail, id, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO episode(started_at, cause, detail) VALUES (?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "recording an episode in");
    sqlite3_bind_int64(st, 1, at);
    sqlite3_bind_text(st, 2, cause, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sg_store_db_error(s, err, "recording an episode in");
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sg_store_episode_update(sg_store *s, int64_t id, int64_t ended_at, const char *detail,
                            sg_error *err)
{
    if (s->pg)
        return sg_pg_episode_update(s->pg, id, ended_at, detail, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE episode SET ended_at = coalesce(?2, ended_at), "
                           "detail = coalesce(detail || '; ' || ?3, ?3, detail) WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "recording an episode in");
    sqlite3_bind_int64(st, 1, id);
    bind_int_or_null(st, 2, ended_at);
    bind_text_or_null(st, 3, detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "recording an episode in");
}

int sg_store_audit(sg_store *s, int64_t at_ms, const char *actor, const char *action,
                   const char *detail, sg_error *err)
{
    if (s->pg)
        return sg_pg_audit(s->pg, at_ms, actor, action, detail, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO audit(at, actor, action, detail) VALUES (?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sg_store_db_error(s, err, "writing the audit log to");
    sqlite3_bind_int64(st, 1, at_ms);
    sqlite3_bind_text(st, 2, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sg_store_db_error(s, err, "writing the audit log to");
}
