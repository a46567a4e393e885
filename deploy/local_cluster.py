"""A three-node Ray cluster on this machine with S3 storage, to try fertune's multi-machine path by hand.

    python deploy/local_cluster.py            # starts it, prints what to export, Ctrl-C stops it all

A head and two workers (`ray start`, 1 CPU each, token auth on), and moto's S3 server on 127.0.0.1 with
one bucket. Every node is its own process group, so `kill_node` SIGKILLs a node's raylet and its workers
at once, as a reclaimed spot machine would lose them. The `cluster` tests (tests/test_cluster_faults.py)
build one of these per module.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

BUCKET = "fertune"
NODE_CPUS = 1
NODE_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                   "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
WORKER_PORTS_EACH = 200  # each node's own range of ports for its worker processes


def node_tag(index: int) -> str:
    """A resource only node `index` has (0: the head), so a test can tell which node an actor runs on."""
    return f"fertune_node_{index}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, poll: float = 0.5):
    """condition()'s first truthy value; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (`ray start --block` stops its node), then SIGKILL whatever of it is left:
    a worker process that outlived its raylet would hold its ports against the next cluster."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class LocalCluster:
    port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # socket paths < 108
    nodes: list[subprocess.Popen] = field(default_factory=list)  # [head, worker 1, worker 2, ...]
    s3: subprocess.Popen | None = None
    # each cluster its own ports for worker processes: one left by an earlier cluster cannot clash
    worker_ports_from: int = field(default_factory=lambda: random.randrange(20000, 40000, 2000))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> str:
        return f"s3://{BUCKET}/searches"

    @property
    def env(self) -> dict[str, str]:
        """What every process of the cluster and its drivers gets: token auth and the S3 endpoint."""
        return {"RAY_AUTH_MODE": "token", **self.s3_env, "OMP_NUM_THREADS": "1"}

    @property
    def s3_env(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 client (pyarrow, boto3, Ray) at this cluster's server."""
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def _popen(self, args: list[str], log: str) -> subprocess.Popen:
        """A process in its own group, its output in TEMP_DIR/LOG (what `ray start` says when a node fails)."""
        with open(os.path.join(self.temp_dir, log), "w") as out:
            return subprocess.Popen(args, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def start(self, workers: int = 2, s3: bool = True) -> "LocalCluster":
        if s3:
            self.start_s3()
        self._start_head()
        for i in range(workers):
            # one at a time: nodes starting together on one machine take the same socket names in the
            # shared session folder, and the second raylet dies ('bind: Address already in use')
            self.add_worker()
            self.wait_for_nodes(2 + i)
        return self

    def _start_head(self, tries: int = 3) -> None:
        """The head node, once its GCS port answers. A head that exits or stays silent is started again on fresh
        ports: free_port() only proves a port was free a moment ago, and a busy machine can take it meanwhile."""
        for attempt in range(1, tries + 1):
            head = self._ray_start("--head", "--port", str(self.port), "--temp-dir", self.temp_dir,
                                   "--include-dashboard", "false")
            try:
                wait_until(lambda: port_open(self.port) or head.poll() is not None, 90, "the head node's GCS port")
            except TimeoutError:
                pass
            if head.poll() is None and port_open(self.port):
                self.nodes.append(head)
                return
            _stop(head)
            log = self._log_tail("node0.log")
            if attempt == tries:
                raise TimeoutError(f"the head node never opened its GCS port {self.port} ({tries} tries; exit "
                                   f"code {head.returncode}); the end of its log:\n{log}")
            print(f"head node attempt {attempt} failed (exit code {head.returncode}); starting it again on fresh "
                  f"ports. Its log ended:\n{log}", file=sys.stderr)
            self.port = free_port()

    def _log_tail(self, log: str, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.temp_dir, log)) as f:
                return "".join(f.readlines()[-lines:])
        except OSError as err:
            return f"(no log: {err})"

    def start_s3(self) -> "LocalCluster":
        """moto's S3 server on 127.0.0.1 with BUCKET in it; this process's S3 clients are pointed at it."""
        import pyarrow.fs

        self.s3 = self._popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
                              "s3.log")
        wait_until(lambda: port_open(self.s3_port), 60, "moto's S3 server")
        os.environ.update(self.s3_env)
        pyarrow.fs.S3FileSystem(endpoint_override=self.s3_env["AWS_ENDPOINT_URL"],
                                allow_bucket_creation=True).create_dir(BUCKET)
        return self

    def _ray_start(self, *args: str) -> subprocess.Popen:
        """`ray start --block`: stays up, and stops its node's processes when terminated. Nodes sharing one
        machine need their own ports (two raylets on Ray's defaults: 'bind: Address already in use')."""
        ports = [x for flag in NODE_PORT_FLAGS for x in (flag, str(free_port()))]
        index = len(self.nodes)
        first = self.worker_ports_from + WORKER_PORTS_EACH * index
        return self._popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
                            "--num-cpus", str(NODE_CPUS), "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
                            *ports, "--min-worker-port", str(first),
                            "--max-worker-port", str(first + WORKER_PORTS_EACH - 1),
                            "--resources", json.dumps({node_tag(index): 1}), *args], f"node{index}.log")

    def add_worker(self) -> subprocess.Popen:
        node = self._ray_start("--address", self.address)
        self.nodes.append(node)
        return node

    def _probe(self, loop: str, timeout: float) -> str:
        """Run `loop` in a fresh driver process (a driver in the test's own process would change what it sees)."""
        code = ("import json, time, ray\nray.init(address='%s', logging_level='ERROR', log_to_driver=False)\n"
                "alive = lambda: [n['NodeID'] for n in ray.nodes() if n['Alive']]\n" % self.address) + loop
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout + 60,
                             env={**os.environ, **self.env})
        if out.returncode:
            raise RuntimeError("cannot query the cluster: " + (out.stderr.strip().splitlines() or ["?"])[-1])
        return out.stdout.strip().splitlines()[-1]

    def alive_nodes(self) -> list[str]:
        return json.loads(self._probe("print(json.dumps(alive()))", 60))

    def node_of_actors(self, class_name: str) -> list[int]:
        """The node index (0: head) of each live actor whose class name contains `class_name`."""
        # the GCS's actor table (ray.util.state would need the dashboard, which these nodes run without)
        loop = ("tags = {n['NodeID']: [k for k in n['Resources'] if k.startswith('fertune_node_')] "
                "for n in ray.nodes() if n['Alive']}\n"
                "found = [a['Address']['NodeID'] for a in ray._private.state.actors().values() "
                f"if a['State'] == 'ALIVE' and {class_name!r} in a['ActorClassName']]\n"
                "print(json.dumps([int(tags[n][0].rsplit('_', 1)[1]) for n in found if tags.get(n)]))")
        return json.loads(self._probe(loop, 60))

    def node_ids(self) -> dict[int, str]:
        """Node index (0: head) -> Ray node id, for the live nodes."""
        loop = ("print(json.dumps({[k for k in n['Resources'] if k.startswith('fertune_node_')][0].rsplit('_', 1)[1]: "
                "n['NodeID'] for n in ray.nodes() if n['Alive']}))")
        return {int(k): v for k, v in json.loads(self._probe(loop, 60)).items()}

    def wait_for_nodes(self, n: int, timeout: float = 240) -> None:
        loop = (f"t = time.time()\nwhile len(alive()) != {n} and time.time() - t < {timeout}:\n    time.sleep(0.5)\n"
                "print(len(alive()))")
        if self._probe(loop, timeout) != str(n):
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {n} live Ray nodes")

    def live_workers(self) -> list[int]:
        """Indexes of the worker nodes still running (a killed node keeps its index; its replacement gets a new one)."""
        return [i for i, node in enumerate(self.nodes) if i > 0 and node.poll() is None]

    def kill_node(self, index: int) -> None:
        """SIGKILL a worker node: its `ray start`, raylet, object store and every worker process on it."""
        assert index in self.live_workers(), f"node {index} is the head or already dead; live: {self.live_workers()}"
        os.killpg(self.nodes[index].pid, signal.SIGKILL)
        self.nodes[index].wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _stop(node)
        if self.s3 is not None:
            _stop(self.s3)


def main() -> None:
    cluster = LocalCluster().start()
    exports = " ".join(f"{k}={v}" for k, v in cluster.env.items())
    print(f"3 nodes up. In another shell:\n  export {exports}\n"
          f"  fertune search --data demo --address {cluster.address} --storage {cluster.storage}\n"
          f"Ctrl-C stops the cluster and the S3 server (its data is in memory and goes with it).", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
