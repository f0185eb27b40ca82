#!/usr/bin/env python3
"""Checks that the monitoring files name only what stormguard exports.

  promql_names.py rules RULES.yml SCRAPE.txt RUNBOOK.md
      every metric an expression of the rules names is in the scrape (or is
      a recording rule of the file, or Prometheus's own `up`), and every
      runbook_url's anchor is a heading of the runbook
  promql_names.py dashboard DASHBOARD.json SCRAPE.txt
      every PromQL expression of the Grafana dashboard (panels, rows'
      panels, templating queries) names only metrics of the scrape
  promql_names.py names 'EXPR'
      prints the metric names found in EXPR, one a line (for the tests)

SCRAPE.txt is a /metrics answer. A histogram's family NAME also exports
NAME_bucket, NAME_sum and NAME_count, and only those. Exit 0 when all is
found, 1 with each missing name on standard error otherwise. Needs
python3-yaml for the rules (Debian 12's python3 and json otherwise)."""
import json
import re
import sys

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def names_in(expr):
    """The metric names an expression selects: identifiers that are not
    functions, aggregations, keywords, labels, durations, strings or
    Grafana variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'", " ", expr)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)  # Grafana variables
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = GROUPING.sub(" ", e)
    e = re.sub(r"(?<![\w.])\d[\w.]*", " ", e)  # numbers, durations, 1e6
    out = set()
    for m in IDENT.finditer(e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        out.add(name)
    return out


def exported(scrape):
    """Every series name a /metrics answer holds."""
    names = set()
    for line in scrape.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            if m.group(2) == "histogram":
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
            elif m.group(2) == "summary":
                names |= {m.group(1), m.group(1) + "_sum", m.group(1) + "_count"}
            else:
                names.add(m.group(1))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[^{\s]+", line).group(0))
    return names


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def missing(where, expr, known):
    return ["%s: %s is not exported (in %s)" % (where, n, " ".join(expr.split()))
            for n in sorted(names_in(expr) - known)]


def check_rules(path, scrape, runbook):
    import yaml

    doc = yaml.safe_load(open(path))
    rules = [r for g in doc["groups"] for r in g["rules"]]
    known = exported(scrape) | {"up"} | {r["record"] for r in rules if "record" in r}
    headings = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", runbook, re.M)}
    errors = []
    for r in rules:
        what = r.get("alert") or r.get("record")
        errors += missing(what, r["expr"], known)
        if "alert" in r:
            ann = r.get("annotations", {})
            for k in ("summary", "description", "runbook_url"):
                if not ann.get(k):
                    errors.append("%s: no %s annotation" % (what, k))
            url = ann.get("runbook_url", "")
            if "#" not in url or url.split("#", 1)[1] not in headings:
                errors.append("%s: runbook_url %s names no heading of the runbook" % (what, url))
    return errors, len(rules)


def panels_of(node):
    for p in node.get("panels", []):
        yield p
        yield from panels_of(p)


def check_dashboard(path, scrape):
    d = json.load(open(path))
    known = exported(scrape)
    errors, n = [], 0
    for p in panels_of(d):
        for t in p.get("targets", []):
            if "expr" not in t:
                errors.append("panel %r: a target without a PromQL expr" % p.get("title"))
                continue
            n += 1
            errors += missing("panel %r" % p.get("title"), t["expr"], known)
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            m = re.match(r"\s*label_values\((.*),\s*\w+\)\s*$", q)
            n += 1
            errors += missing("variable %s" % v["name"], m.group(1) if m else q, known)
    return errors, n


def main(argv):
    if len(argv) == 3 and argv[1] == "names":
        print("\n".join(sorted(names_in(argv[2]))))
        return 0
    if len(argv) == 5 and argv[1] == "rules":
        errors, n = check_rules(argv[2], open(argv[3]).read(), open(argv[4]).read())
    elif len(argv) == 4 and argv[1] == "dashboard":
        errors, n = check_dashboard(argv[2], open(argv[3]).read())
    else:
        sys.stderr.write(__doc__)
        return 2
    for e in errors:
        sys.stderr.write(e + "\n")
    if not n:
        sys.stderr.write("%s: no expression found\n" % argv[2])
        return 1
    print("%s: %d expressions checked" % (argv[2], n))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
