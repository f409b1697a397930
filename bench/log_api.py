"""Log API keep-alive latency: mirror a region's log (checkpoint, every tile and bundle).

Borderline (`borderline serve --region eu-dublin`, its own process) against a named peer
measured in the same run on the same files: nginx (Debian's nginx-light) serving the log
directory as static files, which is how tlog-tiles expects tiles to be hosted. The client is
httpx on one keep-alive connection, fetching every path a verifier needs, one after another;
each round is a fresh client. Rounds alternate between the servers; medians and ranges of the
per-request latency are printed.

    .venv/bin/python bench/log_api.py [--entries 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from borderline.tlog.tiles import covered_paths
from processes import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"
SERVE = [sys.executable, "-m", "borderline", "serve"]
NGINX_CONFIG = """daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{port};
    location /log/eu-dublin/ {{ alias {log}/; }}
  }}
}}
"""


def make_cloud(root: Path, entries: int) -> tuple[Path, int]:
    """A cloud whose eu-dublin log holds `entries` access-sized entries, checkpointed."""
    root.mkdir(parents=True)
    config_path = root / "borderline.toml"
    config_path.write_text(example_config(root / "data", base_port=free_base_port()))
    with Cloud(load_config(config_path)) as cloud:
        log = cloud.region("eu-dublin").transparency_log
        filler = b'{"type":"access","v":2,"region":"eu-dublin","time":"2026-01-01T00:00Z"}'
        for start in range(0, entries, 1000):
            log.append_batch([filler] * min(1000, entries - start))
        log.checkpoint()
    api = load_config(config_path).region("eu-dublin").api
    assert api is not None
    return config_path, api.port


def mirror_latencies(base: str, paths: list[str]) -> list[float]:
    """Seconds per request, one keep-alive connection, requests one after another."""
    times = []
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/log/eu-dublin/checkpoint").raise_for_status()
        for path in paths:
            start = time.perf_counter()
            response = client.get(f"/log/eu-dublin/{path}")
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="log-api-bench-"))
    root.chmod(0o755)
    paths = covered_paths(args.entries)
    medians: dict[str, list[float]] = {"Borderline": [], "nginx": []}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        config_path, port = make_cloud(root / "borderline", args.entries)
        servers.append(
            subprocess.Popen(
                [*SERVE, "-c", str(config_path), "-r", "eu-dublin"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
        )
        wait_for_port(port)
        bases = {"Borderline": f"http://127.0.0.1:{port}"}
        if Path(NGINX).exists():
            nginx_port = free_port()
            (root / "nginx/tmp").mkdir(parents=True)
            log_dir = root / "borderline/data/eu-dublin/log"
            (root / "nginx/nginx.conf").write_text(
                NGINX_CONFIG.format(root=root / "nginx", port=nginx_port, log=log_dir)
            )
            servers.append(
                subprocess.Popen(
                    [NGINX, "-c", str(root / "nginx/nginx.conf")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for_port(nginx_port)
            bases["nginx"] = f"http://127.0.0.1:{nginx_port}"
        else:
            print(f"peer: {NGINX} not found (apt-get install nginx-light); no ratio")
        for _ in range(args.rounds):
            for name, base in bases.items():
                medians[name].append(statistics.median(mirror_latencies(base, paths)))
    finally:
        for server in servers:
            stop(server)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.entries} entries: {len(paths)} tiles and bundles a mirror, {args.rounds} rounds")
    print(f"{'server':<12} {'median ms/request':>18} {'range of round medians':>24}")
    for name, values in medians.items():
        if values:
            low, high = min(values) * 1e3, max(values) * 1e3
            mid = statistics.median(values) * 1e3
            print(f"{name:<12} {mid:>18.2f} {f'{low:.2f} - {high:.2f}':>24}")
    if medians["nginx"]:
        ratio = statistics.median(medians["Borderline"]) / statistics.median(medians["nginx"])
        print(f"ratio Borderline / nginx latency: {ratio:.2f}x")


if __name__ == "__main__":
    main()
