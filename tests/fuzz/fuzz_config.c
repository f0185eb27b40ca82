/* libFuzzer target: the configuration (config.h) from arbitrary text. The
 * input is read as an INI file: an error names a line the text has, and a
 * file that loads dumps to INI that loads again to the same dump (the admin
 * token and the sentinels' password aside: they dump as comments). Then the
 * input's NUL-separated fields set keys as flags do (section, key, value, in
 * threes) and the result is dumped. Built and run by tests/fuzz/run.sh
 * config. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stormguard/config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dump(const sg_config *c, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        abort();
    sg_config_dump(c, f);
    fclose(f);
    return text;
}

/* The admin token, where it needs no file read. */
static void admin_token(const sg_config *c)
{
    if (c->admin_token_file && !c->admin_token)
        return;
    char *token = NULL;
    sg_error err = {0};
    if (sg_config_admin_token(c, &token, &err) == 0 && c->admin_token && (!token || !*token))
        abort();
    free(token);
}

static void load(const uint8_t *data, size_t size)
{
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n' || i == size - 1;
    sg_config a, b;
    sg_config_init(&a);
    sg_error err = {0};
    if (sg_config_load_text(&a, "fuzz.ini", (const char *)data, size, &err)) {
        int line = 0;
        if (sscanf(err.msg, "fuzz.ini:%d: ", &line) != 1 || line < 1 || (size_t)line > lines) {
            fprintf(stderr, "an error without its line: %s\n", err.msg);
            abort();
        }
        sg_config_close(&a);
        return;
    }
    admin_token(&a);
    size_t len1, len2;
    char *d1 = dump(&a, &len1);
    sg_config_init(&b);
    if (sg_config_load_text(&b, "dump.ini", d1, len1, &err)) {
        fprintf(stderr, "the dump does not load: %s\n%s", err.msg, d1);
        abort();
    }
    /* the secrets (the admin token, the sentinels' password) are dumped
     * as comments (never a value a dump read back could set): the reloaded
     * configuration has none until given one */
    if (a.admin_token && !b.admin_token)
        b.admin_token = sg_xstrdup("x");
    if (a.sentinel_password && !b.sentinel_password)
        b.sentinel_password = sg_xstrdup("x");
    char *d2 = dump(&b, &len2);
    if (len1 != len2 || memcmp(d1, d2, len1)) {
        fprintf(stderr, "the dump loads to another configuration:\n%s\n----\n%s", d1, d2);
        abort();
    }
    free(d1);
    free(d2);
    sg_config_close(&a);
    sg_config_close(&b);
}

static void set_fields(const uint8_t *data, size_t size)
{
    char *copy = sg_xmalloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *field[3];
    int n = 0;
    sg_config c;
    sg_config_init(&c);
    for (size_t at = 0; at <= size; at += strlen(copy + at) + 1) {
        const char *section, *key;
        bool is_list;
        field[n++] = copy + at;
        sg_config_flag(copy + at, &section, &key, &is_list);
        if (n == 3) {
            sg_error err = {0};
            sg_config_set(&c, field[0], field[1], field[2], (at & 1) != 0, &err);
            n = 0;
        }
    }
    admin_token(&c);
    size_t len;
    free(dump(&c, &len));
    sg_config_close(&c);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    set_fields(data, size);
    return 0;
}
