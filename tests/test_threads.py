"""Torch's thread count: chosen from the free cores when a run first starts, kept on resume."""

import torch

from rlblocks.checkpoint import latest_checkpoint, load_checkpoint
from rlblocks.components import threads as threads_mod
from rlblocks.components.threads import Threads, free_threads
from rlblocks.run import resume_run, train


def test_free_threads_leaves_cores_to_others():
    assert free_threads(2, 0) == 2
    assert free_threads(2, 1) == 1
    assert free_threads(2, 7) == 1  # never fewer than one
    assert free_threads(4, None) == 4  # unknown load: all cores


def test_count_is_chosen_once_and_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads_mod, "cores", lambda: 2)
        monkeypatch.setattr(threads_mod, "others_running", lambda: 0)
        first = Threads()
        first.on_train_start()
        assert torch.get_num_threads() == 2 and first.state_dict() == {"count": 2}
        monkeypatch.setattr(threads_mod, "others_running", lambda: 3)  # the machine got busy
        resumed = Threads()
        resumed.load_state_dict(first.state_dict())
        resumed.on_train_start()
        assert torch.get_num_threads() == 2, "a resumed run keeps the count it started with"
        explicit = Threads(1)
        explicit.load_state_dict(first.state_dict())
        explicit.on_train_start()
        assert torch.get_num_threads() == 1 and explicit.state_dict() == {"count": 1}
    finally:
        torch.set_num_threads(before)


def test_ppo_resumes_exactly_when_the_load_changes(tmp_path, monkeypatch):
    """PPO's updates differ in the last bits between 1 and 2 threads: a resume on an idle machine
    must still use the count the run started with on a busy one (CI caught this when the count
    followed the load)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_mod, "cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # every run is built (weights drawn) with the same count
    kw = {"seed": 1, "overrides": {"n_steps": "64", "n_minibatches": "4", "n_epochs": "2"}, "eval_every": 0,
          "checkpoint_every": 0, "device": "cpu", "progress": False}
    try:
        monkeypatch.setattr(threads_mod, "others_running", lambda: 1)  # another process running
        straight = train("ppo", "Pendulum-v1", steps=192, run_dir=str(tmp_path / "a"), **kw)
        split = train("ppo", "Pendulum-v1", steps=96, run_dir=str(tmp_path / "b"), **kw)
        monkeypatch.setattr(threads_mod, "others_running", lambda: 0)  # it has ended
        resume_run(split, steps=192, device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    a = load_checkpoint(latest_checkpoint(straight))["modules"]
    b = load_checkpoint(latest_checkpoint(split))["modules"]
    assert a["threads"] == b["threads"] == {"count": 1}
    flat_a, flat_b = _tensors(a["policy"]), _tensors(b["policy"])
    assert flat_a.keys() == flat_b.keys() and len(flat_a) >= 4
    for k in flat_a:
        assert torch.equal(flat_a[k], flat_b[k]), k


def _tensors(tree, prefix=""):
    """``{dotted key: tensor}`` of a nested state dict."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_tensors(v, f"{prefix}.{k}"))
    return out


def test_a_runs_config_json_repeats_it_bit_for_bit_whatever_the_load(tmp_path, monkeypatch, capsys):
    """The count a new run takes from the free cores is printed and recorded in ``config.json``;
    ``train --config RUN/config.json`` takes it (with the seed and schedules) from there, so the
    same command gives the same result on a busy and an idle machine (the old code refused a run's
    ``config.json`` as a config file, and a new run followed the load)."""
    import json

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_mod, "cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # both runs draw their initial weights with the same count
    kw = {"overrides": {"n_steps": "64", "n_minibatches": "4", "n_epochs": "2"}, "eval_every": 0,
          "device": "cpu", "progress": False}
    try:
        monkeypatch.setattr(threads_mod, "others_running", lambda: 1)  # another process running: 1 thread
        first = train("ppo", "Pendulum-v1", steps=192, seed=3, run_dir=str(tmp_path / "busy"), **kw)
        out = capsys.readouterr().out
        assert f"torch threads: 1 (the cores free of other processes, of 2); recorded in {first}/config.json" in out
        record = json.loads((first / "config.json").read_text())
        assert record["options"]["threads"] == 1 and record["seed"] == 3
        monkeypatch.setattr(threads_mod, "others_running", lambda: 0)  # now idle: a new run would take 2
        again = train(None, None, config_file=str(first / "config.json"), run_dir=str(tmp_path / "idle"),
                      device="cpu", progress=False)
        assert f"torch threads: 1 (as in {first}/config.json)" in capsys.readouterr().out
        fresh = train("ppo", "Pendulum-v1", steps=192, seed=3, run_dir=str(tmp_path / "fresh"), **kw)
    finally:
        torch.set_num_threads(before)
    a, b = (load_checkpoint(latest_checkpoint(p))["modules"] for p in (first, again))
    assert json.loads((again / "config.json").read_text())["options"] == record["options"] | {
        "config_file": str(first / "config.json")}
    assert a["threads"] == b["threads"] == {"count": 1}
    flat_a, flat_b = _tensors(a["policy"]), _tensors(b["policy"])
    assert flat_a.keys() == flat_b.keys() and len(flat_a) >= 4
    for k in flat_a:
        assert torch.equal(flat_a[k], flat_b[k]), k
    assert json.loads((fresh / "config.json").read_text())["options"]["threads"] == 2  # the rule is the load's
