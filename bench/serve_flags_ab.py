"""A/B of two of Ray Serve's documented throughput flags on fertune's app, set per replica through the
deployment's runtime_env: the same app with and without them, in one Ray session.

    python bench/serve_flags_ab.py --model runs/train/cnn_small_fer2013

Concurrency 1: both apps up, p50 from alternating 1-s rounds (this machine's speed drifts between runs).
Concurrency 32: batched and unbatched throughput, each variant twice, one app at a time.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

from serve_load import face_png, free_port, interleaved_c1, load  # bench/ is on sys.path as a script

# user code on the replica's own event loop; access-log lines written in batches
FLAGS = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    import ray
    from ray import serve

    from serve.app import FerServer, deployment_options
    from serve.settings import settings_from_dict

    def app(flags: bool, **settings):
        s = settings_from_dict({"model": args.model, **settings})
        opts = deployment_options(s)
        if flags:
            opts["ray_actor_options"]["runtime_env"] = {"env_vars": FLAGS}
        return FerServer.options(**opts).bind(asdict(s))

    png, port = face_png(), free_port()
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", configure_logging=False,
             log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(app(True), name="on", route_prefix="/on")
    serve.run(app(False), name="off", route_prefix="/off")
    rounds = interleaved_c1(port, [(n, f"/{n}/v1/predict?faces=false", "image/png") for n in ("on", "off")], png, 12)
    print(f"c=1 p50 (alternating rounds): flags on {rounds['on']} ms, off {rounds['off']} ms", flush=True)
    serve.delete("on")
    serve.delete("off")
    for flags in (True, False, True, False):
        for batch in (1, 32):
            serve.run(app(flags, max_batch_size=batch), name="x", route_prefix="/x")
            row = load(port, "/x/v1/predict?faces=false", png, "image/png", 32, args.seconds)
            print(f"c=32 flags {'on ' if flags else 'off'} max batch {batch:>2}: {row['rps']} req/s", flush=True)
            serve.delete("x")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
