"""The one command every provider runs from the bundle folder:

    python -m launcher.train.launch --output-dir DIR [--resume-from DIR]

It reads the cluster shape the platform describes in its environment (SkyPilot, SageMaker,
Azure ML, Vertex AI, torchrun-style variables, or nothing: one machine) and starts
`accelerate launch train.py --job job.yaml ...` with --num_machines / --machine_rank /
--main_process_ip / --num_processes set accordingly. Imports nothing heavy itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

PORT = 29500
# The training program writes its exit code here (main process) before exiting.
EXIT_FILE = ".train_exit.json"


@dataclass
class Topology:
    num_machines: int = 1
    machine_rank: int = 0
    main_ip: str = "127.0.0.1"
    gpus_per_machine: int = 0
    source: str = "single machine"


def count_gpus() -> int:
    """GPUs on this machine: what the platform says, else the NVIDIA driver's list (no process
    started: `launch compare` calls this too), else nvidia-smi."""
    v = os.environ.get("SKYPILOT_NUM_GPUS_PER_NODE") or os.environ.get("SM_NUM_GPUS")
    if v and v.isdigit():
        return int(v)
    driver = "/proc/driver/nvidia/gpus"
    if os.path.isdir(driver):
        return len(os.listdir(driver))
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            return 0
    return 0


def detect(env: dict[str, str] | None = None, gpus: int | None = None) -> Topology:
    """Cluster shape from the environment each platform sets on every node."""
    env = dict(os.environ if env is None else env)
    gpus = count_gpus() if gpus is None else gpus
    if "SKYPILOT_NODE_IPS" in env:  # SkyPilot: newline-separated, head first
        ips = [x for x in env["SKYPILOT_NODE_IPS"].split("\n") if x.strip()]
        return Topology(len(ips), int(env.get("SKYPILOT_NODE_RANK", "0")), ips[0],
                        int(env.get("SKYPILOT_NUM_GPUS_PER_NODE", gpus) or 0), "SkyPilot")
    if "SM_HOSTS" in env and "SM_CURRENT_HOST" in env:  # SageMaker training toolkit
        hosts = sorted(json.loads(env["SM_HOSTS"]))
        return Topology(len(hosts), hosts.index(env["SM_CURRENT_HOST"]), hosts[0],
                        int(env.get("SM_NUM_GPUS", gpus) or 0), "SageMaker")
    if "CLUSTER_SPEC" in env:  # Vertex AI: chief + workers
        spec = json.loads(env["CLUSTER_SPEC"])
        cluster = spec.get("cluster", {})
        chief = cluster.get("workerpool0", [])
        workers = cluster.get("workerpool1", [])
        hosts = chief + workers
        task = spec.get("task", {})
        rank = (0 if task.get("type") == "workerpool0" else 1 + int(task.get("index", 0)))
        main = hosts[0].split(":")[0] if hosts else "127.0.0.1"
        return Topology(max(len(hosts), 1), rank, main, gpus, "Vertex AI")
    if "AZUREML_RUN_ID" in env and "MASTER_ADDR" in env:  # Azure ML pytorch distribution
        return Topology(int(env.get("NODE_COUNT", env.get("AZUREML_NODE_COUNT", "1"))),
                        int(env.get("NODE_RANK", "0")), env["MASTER_ADDR"], gpus, "Azure ML")
    return Topology(1, 0, "127.0.0.1", gpus, "single machine")


def accelerate_args(topo: Topology, processes: int | None = None) -> list[str]:
    per_machine = processes or max(topo.gpus_per_machine, 1)
    args = ["--quiet", "--num_machines", str(topo.num_machines), "--num_processes", str(per_machine * topo.num_machines),
            "--dynamo_backend", "no"]
    if topo.num_machines > 1:
        args += ["--machine_rank", str(topo.machine_rank), "--main_process_ip", topo.main_ip,
                 "--main_process_port", str(PORT)]
    if per_machine * topo.num_machines > 1:
        # accelerate's multi-process launcher (torch.distributed.run); on CPU it runs gloo.
        args += ["--multi_gpu"]
    elif topo.gpus_per_machine == 0:
        args += ["--cpu"]
    return args


def build_command(output_dir: str, resume_from: str | None = None, processes: int | None = None,
                  topo: Topology | None = None, extra: list[str] | None = None) -> list[str]:
    topo = topo or detect()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *accelerate_args(topo, processes),
           "train.py", "--job", "job.yaml", "--output-dir", output_dir]
    if resume_from:
        cmd += ["--resume-from", resume_from]
    return cmd + list(extra or [])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m launcher.train.launch")
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("--resume-from", default=None)
    ap.add_argument("--processes", type=int, default=None, help="processes per machine (default: one per GPU)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--print", action="store_true", help="print the command instead of running it")
    a = ap.parse_args(argv)
    topo = detect()
    cmd = build_command(a.output_dir, a.resume_from, a.processes, topo, ["--fresh"] if a.fresh else [])
    print(f"launcher: {topo.source}, {topo.num_machines} machine(s), rank {topo.machine_rank}: "
          + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if a.print:
        return
    env = dict(os.environ)
    if topo.gpus_per_machine == 0 and a.processes and a.processes > 1:
        # Share the cores between CPU processes instead of oversubscribing them.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // a.processes)))
    sys.exit(run_forwarding(cmd, env, a.output_dir))


def run_forwarding(cmd: list[str], env: dict, output_dir: str) -> int:
    """Run accelerate launch, forward SIGTERM/SIGINT to it, and exit with the training program's
    own code (accelerate's launcher turns every failure into 1; 143 after a preemption checkpoint
    and 2 for bad input matter to the caller)."""
    proc = subprocess.Popen(cmd, env=env)
    told: list = []

    def forward(signum, _frame):
        # To the training processes themselves, as SIGTERM: accelerate's single-process launcher
        # dies on SIGTERM and would orphan train.py (which then never hears of it), and a Ctrl-C
        # already reached train.py through the terminal (a second SIGINT means "give up now").
        try:
            import psutil
            kids = psutil.Process(proc.pid).children(recursive=True)
        except Exception:  # noqa: BLE001 - no psutil, or the launcher is already gone
            kids = []
        for k in kids:
            try:
                k.send_signal(signal.SIGTERM)
                told.append(k)
            except Exception:  # noqa: BLE001 - exited meanwhile
                pass
        if not kids:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    rc = proc.wait()
    if told:  # the launcher may exit first; the checkpoint is written by its children
        import psutil
        psutil.wait_procs(told, timeout=900)
    if rc != 0:
        try:
            with open(os.path.join(output_dir, EXIT_FILE)) as f:
                rc = int(json.load(f).get("exit_code", rc)) or rc
        except (OSError, ValueError, TypeError):
            pass
    return rc


if __name__ == "__main__":
    main()
