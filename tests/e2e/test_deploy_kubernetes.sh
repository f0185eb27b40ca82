#!/usr/bin/env bash
# deploy/kubernetes/: every manifest is valid YAML with apiVersion, kind
# and metadata.name; the Deployment holds together (each volumeMount names a
# volume, each volume's ConfigMap, Secret and claim is a manifest here,
# the probes' named port is declared); Igor's baseUrl is the gate's
# --listen over loopback, the downstream is Echo's Service, the probes are
# /readyz and /livez on the admin port, the store's and the token's paths
# lie on their volumes; the initContainer runs `stormguard config` with
# exactly the sidecar's arguments, and the binary accepts them (the token
# and store paths mapped to temp files). `kubectl kustomize` renders the
# directory where kubectl is installed.
source "$SG_TESTS/lib.sh"

K8S=$SG_TESTS/../deploy/kubernetes
[ -d "$K8S" ] || fail "$K8S is missing"
"$PY" -c 'import yaml' 2>/dev/null || fail "python3 yaml missing (Debian's python3-yaml; scripts/setup.sh)"

# check.py prints the sidecar's arguments, one a line, after its checks
cat >"$TMP/check.py" <<'EOF'
import glob, os, sys, urllib.parse, yaml
k8s = sys.argv[1]
docs = {}
files = sorted(glob.glob(os.path.join(k8s, "*.yaml")))
assert files, "no manifest"
for f in files:
    try:
        loaded = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e:
        sys.exit(f"{f}: invalid YAML: {e}")
    assert loaded, f"{f}: no document"
    for d in loaded:
        for k in ("apiVersion", "kind"):
            assert isinstance(d.get(k), str), f"{f}: no {k}"
        if d["kind"] == "Kustomization":
            for r in d.get("resources", []):
                assert os.path.exists(os.path.join(k8s, r)), f"{f}: resource {r} missing"
            continue
        name = (d.get("metadata") or {}).get("name")
        assert isinstance(name, str) and name, f"{f}: {d['kind']} has no metadata.name"
        docs[(d["kind"], name)] = d
print("# manifests:", ", ".join(f"{k}/{n}" for k, n in sorted(docs)), file=sys.stderr)

deps = [d for (k, _), d in docs.items() if k == "Deployment"]
assert len(deps) == 1, "one Deployment"
pod = deps[0]["spec"]["template"]["spec"]
assert deps[0]["spec"]["selector"]["matchLabels"].items() <= deps[0]["spec"]["template"]["metadata"]["labels"].items(), \
    "the selector matches the pod's labels"
volumes = {v["name"]: v for v in pod["volumes"]}
for v in volumes.values():
    if "configMap" in v:
        assert ("ConfigMap", v["configMap"]["name"]) in docs, f"volume {v['name']}: no such ConfigMap"
    if "secret" in v:
        assert ("Secret", v["secret"]["secretName"]) in docs, f"volume {v['name']}: no such Secret"
    if "persistentVolumeClaim" in v:
        assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in docs, \
            f"volume {v['name']}: no such claim"
containers = {c["name"]: c for c in pod["containers"]}
inits = {c["name"]: c for c in pod.get("initContainers", [])}
for c in list(containers.values()) + list(inits.values()):
    assert c.get("image"), f"container {c['name']}: no image"
    for m in c.get("volumeMounts", []):
        assert m["name"] in volumes, f"container {c['name']}: mount of unknown volume {m['name']}"
assert {"igor", "stormguard"} <= set(containers), "containers igor and stormguard"
sg = containers["stormguard"]
args = sg["args"]
assert args[0] == "run", "the sidecar runs stormguard run"
opts = dict(a[2:].split("=", 1) for a in args[1:])
assert len(opts) == len(args) - 1 and all(a.startswith("--") and "=" in a for a in args[1:]), \
    "the sidecar's options are --flag=value"

# the pre-start check: the same arguments, config for run
pre = [c for c in inits.values() if c.get("args", [None])[0] == "config"]
assert len(pre) == 1, "one initContainer runs stormguard config"
pre = pre[0]
assert pre["args"] == ["config"] + args[1:], "the initContainer's arguments are the sidecar's"
assert pre["image"] == sg["image"], "the same image"
def mounts(c):
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
def volume_of(c, path):
    best = max((p for p in mounts(c) if path.startswith(p.rstrip("/") + "/")), key=len, default=None)
    return volumes[mounts(c)[best]] if best else None

# Igor posts to the gate over loopback
igor_cfg = None
for m in containers["igor"].get("volumeMounts", []):
    v = volumes[m["name"]]
    if "configMap" in v:
        cm = docs[("ConfigMap", v["configMap"]["name"])]
        for text in cm["data"].values():
            igor_cfg = yaml.safe_load(text)
base = igor_cfg["services"]["echo"]["baseUrl"]
u = urllib.parse.urlsplit(base)
host, port = opts["listen"].rsplit(":", 1)
assert u.scheme == "http" and u.hostname == "127.0.0.1" and u.port == int(port), \
    f"Igor's services.echo.baseUrl {base} is not the gate's --listen {opts['listen']}"
assert host == "127.0.0.1", "the gate listens on loopback only"
assert opts["downstream"] == "http://spin-echo:8089", "the downstream is Echo's Service (spin-echo:8089)"

# probes on the admin port
admin_port = int(opts["admin"].rsplit(":", 1)[1])
named = {p["name"]: p["containerPort"] for p in sg.get("ports", [])}
for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
    g = sg[probe]["httpGet"]
    assert g["path"] == path, f"{probe} is {g['path']}, not {path}"
    p = named.get(g["port"], g["port"])
    assert p == admin_port, f"{probe} on port {p}, the admin API on {admin_port}"

# the token from the Secret, the store on its volume, in both containers
for c in (sg, pre):
    v = volume_of(c, opts["admin-token-file"])
    assert v and "secret" in v, f"{c['name']}: --admin-token-file is not on the Secret's volume"
    key = os.path.basename(opts["admin-token-file"])
    secret = docs[("Secret", v["secret"]["secretName"])]
    assert key in (secret.get("stringData") or {}) or key in (secret.get("data") or {}), \
        f"the Secret has no key {key}"
v = volume_of(sg, opts["db"])
assert v and ("persistentVolumeClaim" in v or "emptyDir" in v), "--db is not on the store's volume"
req = sg.get("resources", {}).get("requests", {})
assert req.get("memory") and req.get("cpu"), "the sidecar has memory and cpu requests"
assert sg.get("resources", {}).get("limits", {}).get("memory"), "and a memory limit"
print("\n".join(args))
EOF

run "$PY" "$TMP/check.py" "$K8S"
[ "$RC" = 0 ] || fail "deploy/kubernetes: $ERR"
echo "$ERR"
ok "the manifests are valid YAML and hold together"
mapfile -t ARGS <<<"$OUT"
assert_eq run "${ARGS[0]}" "the sidecar's arguments extracted"

echo "# the binary accepts the sidecar's arguments"
printf 'tok-%s\n' "$RANDOM$RANDOM" >"$TMP/admin-token"
mkdir -p "$TMP/store"
MAPPED=()
for a in "${ARGS[@]:1}"; do
    case $a in
    --admin-token-file=*) a=--admin-token-file=$TMP/admin-token ;;
    --db=*) a=--db=$TMP/store/${a##*/} ;;
    esac
    MAPPED+=("$a")
done
run "$SG_BIN" config "${MAPPED[@]}"
assert_rc 0 "stormguard config with the sidecar's arguments"
assert_contains "$OUT" "downstream = http://spin-echo:8089" "the effective downstream"
assert_contains "$OUT" "name = igor" "the igor profile"
assert_not_contains "$OUT" "$(cat "$TMP/admin-token")" "the token is not printed"
[ -z "$(ls -A "$TMP/store")" ] || fail "config wrote into the store's directory"
ok "nothing written to the store's volume"
run "$SG_BIN" config "${MAPPED[@]/--admin-token-file=*/--admin-token-file=$TMP/none}"
assert_rc 2 "without its token file the check fails (the initContainer stops the pod)"

if command -v kubectl >/dev/null; then
    run timeout 60 kubectl kustomize "$K8S"
    assert_rc 0 "kubectl kustomize renders deploy/kubernetes"
    assert_contains "$OUT" "kind: Deployment" "with the Deployment"
else
    echo "# kubectl not found: kustomization.yaml not rendered"
fi

finish
