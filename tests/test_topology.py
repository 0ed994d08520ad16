"""launcher.train.launch: the cluster shape each platform describes becomes accelerate's flags."""

from __future__ import annotations

import json

from launcher.train.launch import Topology, accelerate_args, build_command, detect


def test_single_machine_cpu():
    t = detect({}, gpus=0)
    assert (t.num_machines, t.machine_rank, t.source) == (1, 0, "single machine")
    args = accelerate_args(t)
    assert "--cpu" in args and "--multi_gpu" not in args and args[args.index("--num_processes") + 1] == "1"


def test_cpu_processes_use_the_multi_process_launcher():
    args = accelerate_args(detect({}, gpus=0), processes=2)
    assert "--multi_gpu" in args and "--cpu" not in args and args[args.index("--num_processes") + 1] == "2"


def test_skypilot_multi_node():
    env = {"SKYPILOT_NODE_IPS": "10.0.0.5\n10.0.0.6\n", "SKYPILOT_NODE_RANK": "1", "SKYPILOT_NUM_GPUS_PER_NODE": "4"}
    t = detect(env, gpus=4)
    assert (t.num_machines, t.machine_rank, t.main_ip, t.gpus_per_machine) == (2, 1, "10.0.0.5", 4)
    args = accelerate_args(t)
    assert args[args.index("--num_processes") + 1] == "8" and args[args.index("--machine_rank") + 1] == "1"
    assert args[args.index("--main_process_ip") + 1] == "10.0.0.5"


def test_sagemaker_hosts():
    env = {"SM_HOSTS": json.dumps(["algo-2", "algo-1"]), "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "1"}
    t = detect(env, gpus=1)
    assert (t.num_machines, t.machine_rank, t.main_ip) == (2, 1, "algo-1")


def test_vertex_cluster_spec():
    spec = {"cluster": {"workerpool0": ["chief:2222"], "workerpool1": ["w0:2222", "w1:2222"]},
            "task": {"type": "workerpool1", "index": 1}}
    t = detect({"CLUSTER_SPEC": json.dumps(spec)}, gpus=1)
    assert (t.num_machines, t.machine_rank, t.main_ip) == (3, 2, "chief")


def test_azureml_env():
    t = detect({"AZUREML_RUN_ID": "r", "MASTER_ADDR": "10.1.1.1", "NODE_RANK": "1", "NODE_COUNT": "2"}, gpus=2)
    assert (t.num_machines, t.machine_rank, t.main_ip, t.source) == (2, 1, "10.1.1.1", "Azure ML")


def test_command_is_accelerate_launch_of_the_bundle_entry():
    cmd = build_command("/out", resume_from="/ckpt", topo=Topology(gpus_per_machine=1))
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("train.py"):] == ["train.py", "--job", "job.yaml", "--output-dir", "/out",
                                           "--resume-from", "/ckpt"]
