# Sourced by the benchmarks: an nginx of their own, one worker, everything
# under one directory, no access log.
#
#   sg_start_nginx DIR HTTP_CONF   writes DIR/nginx.conf with HTTP_CONF in its
#                                  http block and starts nginx (pid in
#                                  DIR/nginx.pid)
#   sg_stop_nginx DIR
sg_start_nginx() {
  local dir=$1
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx;
  proxy_temp_path $dir/nginx;
  fastcgi_temp_path $dir/nginx;
  uwsgi_temp_path $dir/nginx;
  scgi_temp_path $dir/nginx;
$2
}
CONF
  nginx -c "$dir/nginx.conf"
}

sg_stop_nginx() {
  [[ -f $1/nginx.pid ]] && kill "$(cat "$1/nginx.pid")" 2>/dev/null || true
}
